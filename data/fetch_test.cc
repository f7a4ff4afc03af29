// EnsureText8 against a real HTTP server (python3 -m http.server) on loopback.
#include "data/fetch.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zip.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/subprocess.h"
#include "common/temp_dir.h"
#include "common/test_files.h"
#include "data/text8.h"

namespace ablate::text8 {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::ListDir;
using testing::ReadFile;
using testing::WriteFile;

// The size of the test's text8; the splits are 9,000 / 500 / 500 bytes.
constexpr uint64_t kTestText8Bytes = 10'000;
// How long the server may take to start listening.
constexpr auto kServerStartTimeout = std::chrono::seconds(30);

// kTestText8Bytes of text8-format text, cleaned from English prose.
std::string MakeText8() {
  const std::string paragraph = Clean(
      "The Cleaner turns any text into the 27 symbols of text8: in 1999, Wikipedia did not yet "
      "exist, but by 2006 Matt Mahoney's wikifil.pl had cleaned its first 10^9 bytes. Letters are "
      "lowercased, digits spelled out, and everything else becomes a single space.");
  std::string text;
  while (text.size() < kTestText8Bytes) text += paragraph;
  text.resize(kTestText8Bytes);
  return text;
}

// Writes a zip archive holding `members` (name, content).
void MakeZip(const std::string& path,
             const std::vector<std::pair<std::string, std::string>>& members) {
  int error = 0;
  zip_t* archive = zip_open(path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &error);
  ASSERT_NE(archive, nullptr) << "zip_open " << path << ": " << error;
  for (const auto& [name, content] : members) {
    zip_source_t* source = zip_source_buffer(archive, content.data(), content.size(), 0);
    ASSERT_NE(source, nullptr);
    ASSERT_GE(zip_file_add(archive, name.c_str(), source, ZIP_FL_OVERWRITE), 0)
        << zip_strerror(archive);
  }
  ASSERT_EQ(zip_close(archive), 0) << zip_strerror(archive);
}

bool CanConnect(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool connected = connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  close(fd);
  return connected;
}

// A loopback TCP socket on a port the kernel picked; `listening` decides
// whether it accepts connections (into its backlog, never answered).
class LoopbackSocket {
 public:
  explicit LoopbackSocket(bool listening) : fd_(socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof(address);
    if (bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
        getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length) != 0 ||
        (listening && listen(fd_, 4) != 0)) {
      ADD_FAILURE() << "cannot set up a loopback socket";
    }
    port_ = ntohs(address.sin_port);
  }
  LoopbackSocket(const LoopbackSocket&) = delete;
  LoopbackSocket& operator=(const LoopbackSocket&) = delete;
  ~LoopbackSocket() { close(fd_); }
  int port() const { return port_; }

 private:
  int fd_;
  int port_ = 0;
};

// `python3 -m http.server` serving `dir` on a free loopback port. Stopped
// (SIGTERM, then reaped) by Stop() or the destructor; the child also dies
// with the test process.
class HttpServer {
 public:
  explicit HttpServer(const std::string& dir) {
    // The port is free once this socket closes; the server takes it next.
    port_ = LoopbackSocket(/*listening=*/false).port();
    const std::string port = std::to_string(port_);
    const int null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    SpawnOptions options;
    options.argv = {"/usr/bin/env", "python3",     "-m", "http.server", "--bind",
                    "127.0.0.1",    "--directory", dir,  port};
    options.stdout_fd = null_fd;
    options.stderr_fd = null_fd;
    options.death_signal = SIGKILL;
    StatusOr<pid_t> pid = Spawn(options);
    close(null_fd);
    if (!pid.ok()) {
      ADD_FAILURE() << pid.status().ToString();
      return;
    }
    pid_ = *pid;
    const auto deadline = std::chrono::steady_clock::now() + kServerStartTimeout;
    while (!CanConnect(port_)) {
      if (std::optional<int> code = PollExit(pid_)) {
        pid_ = -1;
        ADD_FAILURE() << "python3 -m http.server exited at start: status " << *code;
        return;
      }
      if (std::chrono::steady_clock::now() > deadline) {
        ADD_FAILURE() << "python3 -m http.server did not listen on port " << port_;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;
  ~HttpServer() { Stop(); }

  void Stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    (void)WaitForExit(pid_);
    pid_ = -1;
  }

  std::string Url(const std::string& file) const {
    return "http://127.0.0.1:" + std::to_string(port_) + "/" + file;
  }

 private:
  int port_ = 0;
  pid_t pid_ = -1;
};

// A served directory, a not-yet-created cache directory and the server.
class Text8Fetch : public ::testing::Test {
 protected:
  Text8Fetch() : www_(temp_.File("www")), cache_(temp_.File("cache")) {
    fs::create_directory(www_);
    MakeZip(www_ + "/text8.zip", {{"text8", text8_}});
    server_ = std::make_unique<HttpServer>(www_);
  }

  FetchOptions Options(const std::string& file = "text8.zip") const {
    FetchOptions options;
    options.data_dir = cache_;
    options.url = server_->Url(file);
    options.expected_bytes = kTestText8Bytes;
    options.connect_timeout_s = 5;
    options.stall_timeout_s = 5;
    return options;
  }

  std::vector<std::string> CachedFiles() const { return ListDir(cache_); }

  const std::string text8_ = MakeText8();
  TempDir temp_;
  const std::string www_;
  const std::string cache_;
  std::unique_ptr<HttpServer> server_;
};

const std::vector<std::string> kCompleteCache = {"text8", "text8.verified", "text8.zip"};

TEST_F(Text8Fetch, DownloadsVerifiesAndSplits) {
  uint64_t last_received = 0;
  const auto progress = [&](uint64_t received, uint64_t) { last_received = received; };
  const StatusOr<std::string> path = EnsureText8(Options(), progress);
  ASSERT_TRUE(path.ok()) << path.status().ToString();
  EXPECT_EQ(*path, cache_ + "/text8");
  EXPECT_EQ(ReadFile(*path), text8_);
  EXPECT_EQ(CachedFiles(), kCompleteCache);
  EXPECT_EQ(last_received, fs::file_size(www_ + "/text8.zip"));

  const StatusOr<Corpus> corpus = LoadCorpus(*path);
  ASSERT_TRUE(corpus.ok()) << corpus.status().ToString();
  EXPECT_EQ(corpus->train().size(), 9'000u);
  EXPECT_EQ(corpus->validation().size(), 500u);
  EXPECT_EQ(corpus->test().size(), 500u);
}

TEST_F(Text8Fetch, VerifiedCacheIsUsedWithoutNetwork) {
  ASSERT_TRUE(EnsureText8(Options(), nullptr).ok());
  server_->Stop();
  const StatusOr<std::string> again = EnsureText8(Options(), nullptr);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(ReadFile(*again), text8_);
}

TEST_F(Text8Fetch, HandCopiedText8IsVerifiedAndAdopted) {
  server_->Stop();
  fs::create_directory(cache_);
  WriteFile(cache_ + "/text8", text8_);
  const StatusOr<std::string> path = EnsureText8(Options(), nullptr);
  ASSERT_TRUE(path.ok()) << path.status().ToString();
  EXPECT_EQ(CachedFiles(), (std::vector<std::string>{"text8", "text8.verified"}));
}

TEST_F(Text8Fetch, CorruptText8IsReplacedByADownload) {
  fs::create_directory(cache_);
  std::string corrupt = text8_;
  corrupt[100] = '!';
  WriteFile(cache_ + "/text8", corrupt);
  const StatusOr<std::string> path = EnsureText8(Options(), nullptr);
  ASSERT_TRUE(path.ok()) << path.status().ToString();
  EXPECT_EQ(ReadFile(*path), text8_);
}

TEST_F(Text8Fetch, CachedZipIsUnpackedWithoutNetwork) {
  ASSERT_TRUE(EnsureText8(Options(), nullptr).ok());
  server_->Stop();
  fs::remove(cache_ + "/text8");
  fs::remove(cache_ + "/text8.verified");
  const StatusOr<std::string> path = EnsureText8(Options(), nullptr);
  ASSERT_TRUE(path.ok()) << path.status().ToString();
  EXPECT_EQ(ReadFile(*path), text8_);
  EXPECT_EQ(CachedFiles(), kCompleteCache);
}

TEST_F(Text8Fetch, BadCachedZipIsDroppedAndDownloadedAgain) {
  fs::create_directory(cache_);
  WriteFile(cache_ + "/text8.zip", "not a zip");
  const StatusOr<std::string> path = EnsureText8(Options(), nullptr);
  ASSERT_TRUE(path.ok()) << path.status().ToString();
  EXPECT_EQ(ReadFile(*path), text8_);
  EXPECT_EQ(CachedFiles(), kCompleteCache);
}

TEST_F(Text8Fetch, HttpErrorNamesTheStatusAndTheUrl) {
  const FetchOptions options = Options("missing.zip");
  const StatusOr<std::string> path = EnsureText8(options, nullptr);
  EXPECT_EQ(path.status().code(), Status::kNotFound);
  EXPECT_THAT(path.status().message(), HasSubstr("404"));
  EXPECT_THAT(path.status().message(), HasSubstr(options.url));
  EXPECT_TRUE(CachedFiles().empty());
}

TEST_F(Text8Fetch, ZipWithoutText8MemberIsAnError) {
  MakeZip(www_ + "/other.zip", {{"text9", text8_}, {"README", "hello"}});
  const StatusOr<std::string> path = EnsureText8(Options("other.zip"), nullptr);
  EXPECT_EQ(path.status().code(), Status::kDataLoss);
  EXPECT_THAT(path.status().message(), HasSubstr("no member named text8"));
  EXPECT_THAT(path.status().message(), HasSubstr("text9, README"));
  EXPECT_TRUE(CachedFiles().empty());
}

TEST_F(Text8Fetch, WrongSizeIsAnError) {
  MakeZip(www_ + "/short.zip", {{"text8", text8_.substr(1)}});
  const StatusOr<std::string> path = EnsureText8(Options("short.zip"), nullptr);
  EXPECT_EQ(path.status().code(), Status::kDataLoss);
  EXPECT_THAT(path.status().message(), HasSubstr("has 9999 bytes, expected 10000"));
  EXPECT_TRUE(CachedFiles().empty());
}

TEST_F(Text8Fetch, ByteOutsideTheAlphabetIsAnError) {
  std::string bad = text8_;
  bad[1234] = 'Q';
  MakeZip(www_ + "/bad.zip", {{"text8", bad}});
  const StatusOr<std::string> path = EnsureText8(Options("bad.zip"), nullptr);
  EXPECT_EQ(path.status().code(), Status::kDataLoss);
  EXPECT_THAT(path.status().message(), HasSubstr("byte 0x51 'Q' at offset 1234"));
  EXPECT_TRUE(CachedFiles().empty());
}

TEST_F(Text8Fetch, ResponseThatIsNotAZipIsAnError) {
  WriteFile(www_ + "/page.zip", "<html>Moved</html>");
  const StatusOr<std::string> path = EnsureText8(Options("page.zip"), nullptr);
  EXPECT_EQ(path.status().code(), Status::kDataLoss);
  EXPECT_THAT(path.status().message(), HasSubstr("not a readable zip archive"));
  EXPECT_TRUE(CachedFiles().empty());
}

TEST_F(Text8Fetch, UnreachableServerNamesTheUrl) {
  FetchOptions options = Options();
  options.url = "http://127.0.0.1:" + std::to_string(LoopbackSocket(/*listening=*/false).port()) +
                "/text8.zip";
  const StatusOr<std::string> path = EnsureText8(options, nullptr);
  EXPECT_EQ(path.status().code(), Status::kUnavailable);
  EXPECT_THAT(path.status().message(), HasSubstr(options.url));
  EXPECT_TRUE(CachedFiles().empty());
}

TEST_F(Text8Fetch, StalledServerTimesOut) {
  const LoopbackSocket silent(/*listening=*/true);
  FetchOptions options = Options();
  options.url = "http://127.0.0.1:" + std::to_string(silent.port()) + "/text8.zip";
  options.stall_timeout_s = 1;
  const StatusOr<std::string> path = EnsureText8(options, nullptr);
  EXPECT_EQ(path.status().code(), Status::kDeadlineExceeded);
  EXPECT_THAT(path.status().message(), HasSubstr(options.url));
  EXPECT_TRUE(CachedFiles().empty());
}

TEST_F(Text8Fetch, DataDirWithoutParentIsNamed) {
  FetchOptions options = Options();
  options.data_dir = temp_.File("no/such/cache");
  const StatusOr<std::string> path = EnsureText8(options, nullptr);
  EXPECT_EQ(path.status().code(), Status::kNotFound);
  EXPECT_THAT(path.status().message(), HasSubstr(options.data_dir));
}

TEST_F(Text8Fetch, DataDirThatIsAFileIsNamed) {
  WriteFile(cache_, "a file");
  const StatusOr<std::string> path = EnsureText8(Options(), nullptr);
  EXPECT_EQ(path.status().code(), Status::kFailedPrecondition);
  EXPECT_THAT(path.status().message(), HasSubstr(cache_ + " exists but is not a directory"));
}

}  // namespace
}  // namespace ablate::text8
