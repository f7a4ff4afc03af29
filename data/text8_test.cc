#include "data/text8.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "common/temp_dir.h"
#include "common/test_files.h"

namespace ablate::text8 {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::ListDir;
using testing::ReadFile;
using testing::WriteFile;

// An input that exercises every rule, for the chunking tests.
const char kEveryRule[] =
    "<page><title>AT&amp;T in 1999</title>\n"
    "<text xml:space=\"preserve\">'''Anarchism''' &lt;ref name=&quot;x&quot;&gt;cite&lt;/ref&gt;"
    "is a [[political philosophy]]&nbsp;&#8212; caf\xc3\xa9 &amp;lt;b&amp;gt;bold&amp;amp; "
    "H&lt;sub&gt;2&lt;/sub&gt;O, &#x27;quoted&#x27; AT&T is big; 3 &gt; 2 but 1 &lt; 2</text>"
    "\t\r\n  TAIL & &; &toolongentitynamethatgoesonandonandon; x<br/>y < z\n"
    "<code>expr1 &lt; expr2</code> x &lt;y<br>z &gt; w a &lt;b> c &gt; d 10 < 20 &gt; 30 <x";

// ---------------------------------------------------------------------------
// Cleaning

TEST(Text8Clean, DigitsAreSpelledOneByOne) {
  EXPECT_EQ(Clean("1999"), " one nine nine nine");
  EXPECT_EQ(Clean("in 1999."), " in one nine nine nine");
  EXPECT_EQ(Clean("abc123def"), " abc one two three def");
  EXPECT_EQ(Clean("0"), " zero");
}

TEST(Text8Clean, UppercaseBecomesLowercase) { EXPECT_EQ(Clean("Hello WORLD"), " hello world"); }

TEST(Text8Clean, PunctuationBecomesOneSpace) {
  EXPECT_EQ(Clean("Hello, world! (Really?) -- yes..."), " hello world really yes");
  EXPECT_EQ(Clean("don't"), " don t");
}

TEST(Text8Clean, WhitespaceRunsCollapseToOneSpace) { EXPECT_EQ(Clean("a \t\n\r\f\v  b"), " a b"); }

TEST(Text8Clean, OutputStartsWithOneSpaceAndHasNoTrailingSpace) {
  EXPECT_EQ(Clean("  anarchism originated  \n"), " anarchism originated");
  EXPECT_EQ(Clean("anarchism"), " anarchism");
}

TEST(Text8Clean, InputWithoutLettersOrDigitsCleansToNothing) {
  EXPECT_EQ(Clean(""), "");
  EXPECT_EQ(Clean(" !?,.\n\t "), "");
  EXPECT_EQ(Clean("<p></p>&nbsp;"), "");
}

TEST(Text8Clean, MatchesTheStartOfText8) {
  EXPECT_EQ(Clean("Anarchism originated as a term of abuse first used against early "
                  "working-class radicals, including the Diggers of the English Revolution."),
            " anarchism originated as a term of abuse first used against early working class "
            "radicals including the diggers of the english revolution");
}

TEST(Text8Clean, HtmlTagsAreRemovedWithTheirAttributes) {
  EXPECT_EQ(Clean("<a href=\"Page.html\" title=\"Title\">link</a> text"), " link text");
  EXPECT_EQ(Clean("<img alt=\"Picture\">"), "");
  EXPECT_EQ(Clean("<!-- a comment -->visible"), " visible");
  EXPECT_EQ(Clean("<!--\n  a comment\n  on lines\n-->visible"), " visible");
}

TEST(Text8Clean, WrittenTagIsRemovedBeforeDecoding) {
  EXPECT_EQ(Clean("<code>expr1 &lt; expr2</code>"), " expr one expr two");
}

TEST(Text8Clean, DecodedTagEndsWithItsRecord) {
  EXPECT_EQ(Clean("x &lt;y<br>z &gt; w"), " x y z w");
  // A '>' that closes no written tag closes the decoded one, then the record.
  EXPECT_EQ(Clean("a &lt;b> c &gt; d"), " a c d");
}

TEST(Text8Clean, UnclosedWrittenTagCanBeClosedByDecoding) {
  EXPECT_EQ(Clean("a < b &gt; c"), " a c");
}

TEST(Text8Clean, WrittenTagEndsAWord) {
  EXPECT_EQ(Clean("<li>one</li><li>two</li>"), " one two");
  EXPECT_EQ(Clean("foo<br>bar"), " foo bar");
  EXPECT_EQ(Clean("foo>bar"), " foo bar");
}

TEST(Text8Clean, EscapedTagIsRemovedWithoutEndingAWord) {
  EXPECT_EQ(Clean("&lt;i&gt;Star&lt;/i&gt;s"), " stars");
  EXPECT_EQ(Clean("H&lt;sub&gt;2&lt;/sub&gt;O"), " h two o");
}

TEST(Text8Clean, AmpLtGtAreDecodedBeforeTagsAndEntities) {
  EXPECT_EQ(Clean("a &amp; b"), " a b");
  EXPECT_EQ(Clean("x &gt; y"), " x y");
  // As in wikifil, a decoded '<' opens a tag that the next '>' closes.
  EXPECT_EQ(Clean("1 &lt; 2 and 3 &gt; 2"), " one two");
}

TEST(Text8Clean, DecodedAmpersandCanStartAnotherEntity) {
  EXPECT_EQ(Clean("&amp;lt;b&amp;gt;bold"), " bold");
  EXPECT_EQ(Clean("a&amp;nbsp;b"), " a b");
}

TEST(Text8Clean, OtherEntitiesBecomeASpace) {
  EXPECT_EQ(Clean("a&nbsp;b"), " a b");
  EXPECT_EQ(Clean("caf&eacute;s"), " caf s");
  EXPECT_EQ(Clean("&#169;2004"), " two zero zero four");
  EXPECT_EQ(Clean("it&#x27;s"), " it s");
}

TEST(Text8Clean, AmpersandOutsideAnEntityIsASpace) {
  EXPECT_EQ(Clean("AT&T is big; ok"), " at t is big ok");
  EXPECT_EQ(Clean("a & b &; c&"), " a b c");
  const std::string long_name(Cleaner::kMaxEntityNameBytes + 1, 'x');
  EXPECT_EQ(Clean("a&" + long_name + ";b"), " a " + long_name + " b");
  const std::string longest_name(Cleaner::kMaxEntityNameBytes, 'x');
  EXPECT_EQ(Clean("a&" + longest_name + ";b"), " a b");
}

TEST(Text8Clean, Utf8BytesBecomeSpaces) {
  EXPECT_EQ(Clean("caf\xc3\xa9 na\xc3\xafve"), " caf na ve");
  EXPECT_EQ(Clean("\xe6\x97\xa5\xe6\x9c\xac"), "");
  EXPECT_EQ(Clean(std::string("a\0b", 3)), " a b");
}

TEST(Text8Clean, UnclosedTagIsText) {
  EXPECT_EQ(Clean("a < b"), " a b");
  EXPECT_EQ(Clean("x <y"), " x y");
}

TEST(Text8Clean, TagLongerThanTheLimitIsText) {
  const std::string longest(Cleaner::kMaxTagBytes, 'a');
  EXPECT_EQ(Clean("<" + longest + ">b"), " b");
  const std::string too_long(Cleaner::kMaxTagBytes + 1, 'a');
  EXPECT_EQ(Clean("<" + too_long + ">b"), " " + too_long + " b");
}

TEST(Text8Clean, ChunkedFeedingEqualsFeedingAtOnce) {
  const std::string input = kEveryRule;
  const std::string expected = Clean(input);
  ASSERT_THAT(expected, HasSubstr(" at t in one nine nine nine"));
  for (size_t chunk = 1; chunk <= input.size(); ++chunk) {
    Cleaner cleaner;
    std::string out;
    for (size_t at = 0; at < input.size(); at += chunk) {
      cleaner.Feed(std::string_view(input).substr(at, chunk), &out);
    }
    cleaner.Finish(&out);
    ASSERT_EQ(out, expected) << "chunks of " << chunk << " bytes";
  }
}

TEST(Text8Clean, FinishFlushesHeldBytesAndStartsANewDocument) {
  Cleaner cleaner;
  std::string out;
  cleaner.Feed("abc &am", &out);
  EXPECT_EQ(out, " abc");
  cleaner.Finish(&out);
  EXPECT_EQ(out, " abc am");
  out.clear();
  cleaner.Feed("Next", &out);
  cleaner.Finish(&out);
  EXPECT_EQ(out, " next");
}

TEST(Text8Clean, RandomBytesCleanToText8Format) {
  std::mt19937 random(8);
  std::uniform_int_distribution<int> byte(0, 255);
  std::string input;
  for (int i = 0; i < 200000; ++i) input.push_back(static_cast<char>(byte(random)));
  const std::string out = Clean(input);
  ASSERT_FALSE(out.empty());
  EXPECT_TRUE(IsText8Clean(out));
  EXPECT_EQ(out.front(), ' ');
  EXPECT_NE(out.back(), ' ');
  EXPECT_EQ(out.find("  "), std::string::npos);
}

// ---------------------------------------------------------------------------
// PrepareFile

TEST(Text8Prepare, WritesTheCleanedTextAndCountsBytes) {
  TempDir dir;
  const std::string input = kEveryRule;
  WriteFile(dir.File("in.html"), input);
  PrepareStats stats;
  ASSERT_TRUE(PrepareFile(dir.File("in.html"), dir.File("out.txt"), &stats).ok());
  const std::string expected = Clean(input);
  EXPECT_EQ(ReadFile(dir.File("out.txt")), expected);
  EXPECT_EQ(stats.bytes_in, input.size());
  EXPECT_EQ(stats.bytes_out, expected.size());
  EXPECT_EQ(ListDir(dir.path()), (std::vector<std::string>{"in.html", "out.txt"}));
  EXPECT_EQ(FormatPrepareSummary(dir.File("in.html"), dir.File("out.txt"), stats),
            "prepared " + dir.File("out.txt") + ": " + std::to_string(expected.size()) +
                " bytes of a-z and space from " + std::to_string(input.size()) + " bytes of " +
                dir.File("in.html"));
}

TEST(Text8Prepare, InputLargerThanOneReadIsCleanedAsAWhole) {
  TempDir dir;
  std::string input;
  while (input.size() < 3'000'000) input += "<b>Hello</b> 42 &amp;&nbsp;W&ouml;rld&lt;i&gt;x ";
  WriteFile(dir.File("in"), input);
  PrepareStats stats;
  ASSERT_TRUE(PrepareFile(dir.File("in"), dir.File("out"), &stats).ok());
  EXPECT_EQ(ReadFile(dir.File("out")), Clean(input));
  EXPECT_EQ(stats.bytes_in, input.size());
}

TEST(Text8Prepare, DashReadsStdin) {
  TempDir dir;
  WriteFile(dir.File("in"), "From Standard Input");
  const int saved_stdin = dup(STDIN_FILENO);
  const int in_fd = open(dir.File("in").c_str(), O_RDONLY);
  ASSERT_GE(in_fd, 0);
  dup2(in_fd, STDIN_FILENO);
  close(in_fd);
  PrepareStats stats;
  const Status status = PrepareFile("-", dir.File("out"), &stats);
  dup2(saved_stdin, STDIN_FILENO);
  close(saved_stdin);
  ASSERT_TRUE(status.ok()) << status.ToString();
  EXPECT_EQ(ReadFile(dir.File("out")), " from standard input");
  EXPECT_THAT(FormatPrepareSummary("-", dir.File("out"), stats), HasSubstr("bytes of stdin"));
}

TEST(Text8Prepare, ExistingOutputIsReplaced) {
  TempDir dir;
  WriteFile(dir.File("in"), "new text");
  WriteFile(dir.File("out"), "old text that is longer");
  ASSERT_TRUE(PrepareFile(dir.File("in"), dir.File("out"), nullptr).ok());
  EXPECT_EQ(ReadFile(dir.File("out")), " new text");
}

TEST(Text8Prepare, MissingInputIsNotFoundNamingThePath) {
  TempDir dir;
  const Status status = PrepareFile(dir.File("absent"), dir.File("out"), nullptr);
  EXPECT_EQ(status.code(), Status::kNotFound);
  EXPECT_THAT(status.message(), HasSubstr(dir.File("absent")));
  EXPECT_TRUE(ListDir(dir.path()).empty());
}

TEST(Text8Prepare, MissingOutputDirectoryIsNamed) {
  TempDir dir;
  WriteFile(dir.File("in"), "text");
  const Status status = PrepareFile(dir.File("in"), dir.File("no/such/out"), nullptr);
  EXPECT_EQ(status.code(), Status::kNotFound);
  EXPECT_THAT(status.message(), HasSubstr(dir.File("no/such")));
  EXPECT_EQ(ListDir(dir.path()), std::vector<std::string>{"in"});
}

TEST(Text8Prepare, OutputUnderARegularFileFails) {
  TempDir dir;
  WriteFile(dir.File("in"), "text");
  const Status status = PrepareFile(dir.File("in"), dir.File("in/out"), nullptr);
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr(dir.File("in")));
  EXPECT_EQ(ListDir(dir.path()), std::vector<std::string>{"in"});
}

// Runs `fn` in a child process as the unprivileged user "nobody" (uid and gid
// 65534) and returns its Status: root writes to read-only directories.
template <typename Fn>
Status AsNobody(Fn fn) {
  int fds[2];
  if (pipe(fds) != 0) return Status(Status::kInternal, "pipe failed");
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    Status status = (setgid(65534) == 0 && setuid(65534) == 0)
                        ? fn()
                        : Status(Status::kInternal, "could not become nobody");
    const std::string reply = std::to_string(static_cast<int>(status.code())) + " " +
                              status.message();
    (void)!write(fds[1], reply.data(), reply.size());
    _exit(0);
  }
  close(fds[1]);
  std::string reply;
  char buffer[4096];
  for (ssize_t n; (n = read(fds[0], buffer, sizeof buffer)) > 0;) reply.append(buffer, n);
  close(fds[0]);
  int wait_status = 0;
  waitpid(pid, &wait_status, 0);
  const size_t space = reply.find(' ');
  if (space == std::string::npos) return Status(Status::kInternal, "the child said nothing");
  return Status(static_cast<Status::Code>(std::stoi(reply.substr(0, space))),
                reply.substr(space + 1));
}

TEST(Text8Prepare, UnwritableOutputDirectoryFailsWithoutAPartialFile) {
  TempDir dir;
  WriteFile(dir.File("in"), "text");
  fs::create_directory(dir.File("locked"));
  // Readable by everyone (nobody included), writable by no one but root.
  const auto read_exec = fs::perms::owner_read | fs::perms::owner_exec | fs::perms::group_read |
                         fs::perms::group_exec | fs::perms::others_read | fs::perms::others_exec;
  fs::permissions(dir.path(), read_exec | fs::perms::owner_write);
  fs::permissions(dir.File("in"), fs::perms::owner_read | fs::perms::owner_write |
                                      fs::perms::group_read | fs::perms::others_read);
  fs::permissions(dir.File("locked"), read_exec);
  auto prepare = [&] { return PrepareFile(dir.File("in"), dir.File("locked/out"), nullptr); };
  const Status status = geteuid() == 0 ? AsNobody(prepare) : prepare();
  EXPECT_EQ(status.code(), Status::kPermissionDenied);
  EXPECT_THAT(status.message(), HasSubstr(dir.File("locked")));
  EXPECT_TRUE(ListDir(dir.File("locked")).empty());
}

TEST(Text8Prepare, InputThatCleansToNothingFailsAndKeepsTheOldOutput) {
  TempDir dir;
  WriteFile(dir.File("in"), "<p>&nbsp;!?</p>\n");
  WriteFile(dir.File("out"), " old");
  const Status status = PrepareFile(dir.File("in"), dir.File("out"), nullptr);
  EXPECT_EQ(status.code(), Status::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr(dir.File("in")));
  EXPECT_THAT(status.message(), HasSubstr("cleans to nothing"));
  EXPECT_EQ(ReadFile(dir.File("out")), " old");
  EXPECT_EQ(ListDir(dir.path()), (std::vector<std::string>{"in", "out"}));
}

TEST(Text8Prepare, UnreadableInputFailsWithoutAPartialFile) {
  TempDir dir;
  fs::create_directory(dir.File("a_directory"));
  const Status status = PrepareFile(dir.File("a_directory"), dir.File("out"), nullptr);
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr(dir.File("a_directory")));
  EXPECT_EQ(ListDir(dir.path()), std::vector<std::string>{"a_directory"});
}

// ---------------------------------------------------------------------------
// Corpus

TEST(Text8Corpus, HundredMillionBytesSplitExactlyNinetyFiveFive) {
  const SplitPoints split = SplitText8(100'000'000);
  EXPECT_EQ(split.train_end, 90'000'000u);
  EXPECT_EQ(split.validation_end, 95'000'000u);
}

TEST(Text8Corpus, SmallFileSplitIsScaled) {
  TempDir dir;
  std::string bytes;
  for (int i = 0; i < 1001; ++i) bytes.push_back(static_cast<char>('a' + i % 26));
  WriteFile(dir.File("small"), bytes);
  const StatusOr<Corpus> corpus = LoadCorpus(dir.File("small"));
  ASSERT_TRUE(corpus.ok()) << corpus.status().ToString();
  EXPECT_EQ(corpus->bytes(), bytes);
  EXPECT_EQ(corpus->train().size(), 900u);      // floor(1001 * 0.90)
  EXPECT_EQ(corpus->validation().size(), 50u);  // floor(1001 * 0.95) - 900
  EXPECT_EQ(corpus->test().size(), 51u);        // the rest
  EXPECT_EQ(std::string(corpus->train()) + std::string(corpus->validation()) +
                std::string(corpus->test()),
            bytes);
}

TEST(Text8Corpus, CopiedCorpusHasItsOwnViews) {
  StatusOr<Corpus> original = Corpus::FromBytes(std::string(100, 'x'), "memory");
  ASSERT_TRUE(original.ok());
  const Corpus copy = *original;
  original = Status::Internal("dropped");
  EXPECT_EQ(copy.train(), std::string(90, 'x'));
  EXPECT_EQ(copy.test(), std::string(5, 'x'));
}

TEST(Text8Corpus, MissingFileIsNotFoundNamingThePath) {
  const StatusOr<Corpus> corpus = LoadCorpus("/nonexistent/text8");
  EXPECT_EQ(corpus.status().code(), Status::kNotFound);
  EXPECT_THAT(corpus.status().message(), HasSubstr("/nonexistent/text8"));
}

TEST(Text8Corpus, EmptyFileIsAnError) {
  TempDir dir;
  WriteFile(dir.File("empty"), "");
  const StatusOr<Corpus> corpus = LoadCorpus(dir.File("empty"));
  EXPECT_EQ(corpus.status().code(), Status::kInvalidArgument);
  EXPECT_THAT(corpus.status().message(), HasSubstr(dir.File("empty") + " is empty"));
}

TEST(Text8Corpus, FileTooSmallToSplitNamesTheEmptySplit) {
  const StatusOr<Corpus> one = Corpus::FromBytes("a", "one.txt");
  EXPECT_EQ(one.status().code(), Status::kInvalidArgument);
  EXPECT_THAT(one.status().message(), HasSubstr("train split empty"));
  const StatusOr<Corpus> ten = Corpus::FromBytes(std::string(10, 'a'), "ten.txt");
  EXPECT_THAT(ten.status().message(), HasSubstr("ten.txt has only 10 bytes"));
  EXPECT_THAT(ten.status().message(), HasSubstr("validation split empty"));
  EXPECT_TRUE(Corpus::FromBytes(std::string(11, 'a'), "eleven.txt").ok());
}

// ---------------------------------------------------------------------------
// Symbols

TEST(Text8Symbols, Vocab27MapsSpaceToZeroAndLettersFromOne) {
  std::vector<uint8_t> symbols;
  ASSERT_TRUE(EncodeSymbols(" abz", kText8Vocab, &symbols).ok());
  EXPECT_EQ(symbols, (std::vector<uint8_t>{0, 1, 2, 26}));
}

TEST(Text8Symbols, Vocab27RejectsAByteNamingItItsOffsetAndTheSetting) {
  std::vector<uint8_t> symbols;
  const Status status = EncodeSymbols("hello world A", kText8Vocab, &symbols);
  EXPECT_EQ(status.code(), Status::kInvalidArgument);
  EXPECT_EQ(status.message(),
            "model.vocab is 27 but byte 0x41 'A' at offset 12 is not in a-z or space");
  EXPECT_TRUE(symbols.empty());
  EXPECT_THAT(EncodeSymbols("ab\n", kText8Vocab, &symbols).message(),
              HasSubstr("byte 0x0a at offset 2"));
}

TEST(Text8Symbols, Vocab256IsTheIdentity) {
  std::string bytes;
  for (int b = 0; b < 256; ++b) bytes.push_back(static_cast<char>(b));
  std::vector<uint8_t> symbols;
  ASSERT_TRUE(EncodeSymbols(bytes, kByteVocab, &symbols).ok());
  ASSERT_EQ(symbols.size(), 256u);
  for (int b = 0; b < 256; ++b) EXPECT_EQ(symbols[b], b);
}

TEST(Text8Symbols, OtherVocabIsRejected) {
  std::vector<uint8_t> symbols;
  const Status status = EncodeSymbols("abc", 28, &symbols);
  EXPECT_EQ(status.code(), Status::kInvalidArgument);
  EXPECT_EQ(status.message(), "model.vocab must be 27 or 256, got 28");
}

TEST(Text8Symbols, OnlyLowercaseLettersAndSpaceAreText8Clean) {
  EXPECT_TRUE(IsText8Clean(" anarchism originated"));
  EXPECT_TRUE(IsText8Clean(""));
  EXPECT_FALSE(IsText8Clean("Anarchism"));
  EXPECT_FALSE(IsText8Clean("a\nb"));
  EXPECT_EQ(FindNonText8Byte("ab1"), 2u);
  EXPECT_EQ(DescribeByte('A'), "0x41 'A'");
  EXPECT_EQ(DescribeByte(0xc3), "0xc3");
}

}  // namespace
}  // namespace ablate::text8
