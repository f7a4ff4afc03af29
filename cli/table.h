// Output helpers shared by the commands: the --format choice, aligned text
// tables and CSV, and the short human forms of durations, rates and counts.
#ifndef ABLATE_CLI_TABLE_H_
#define ABLATE_CLI_TABLE_H_

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/status.h"

namespace ablate {

enum class Format { kTable, kJson, kCsv };

// Parses a --format value among `allowed`; InvalidArgument names the value
// and the allowed ones.
StatusOr<Format> ParseFormat(const std::string& value, const std::vector<Format>& allowed);
const char* FormatName(Format format);

// Rows of cells under a header. Columns whose every cell reads as a number
// are right-aligned in text.
class Table {
 public:
  explicit Table(std::vector<std::string> header) : header_(std::move(header)) {}

  // `cells` has as many entries as the header.
  void AddRow(std::vector<std::string> cells);
  bool empty() const { return rows_.empty(); }

  // Aligned columns separated by two spaces, one line per row, header first.
  std::string ToText() const;
  // RFC 4180: a comma between cells, CRLF-free lines, cells with a comma,
  // quote or line break quoted.
  std::string ToCsv() const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

// Column names for grid factors given by canonical key ("model.cell"): the
// setting's own name ("cell") unless two keys share it.
std::vector<std::string> FactorHeader(const std::vector<std::string>& keys);
// A factor's value as a cell: a string bare, anything else as JSON.
std::string FactorCell(const nlohmann::json& value);

// A command line as a POSIX shell reads it back: each argument bare when it
// holds only characters no shell treats specially, else in single quotes.
std::string ShellQuote(const std::vector<std::string>& argv);

// "42s", "3m05s", "2h07m", "3d04h"; "-" for a negative or non-finite value.
std::string FormatDuration(double seconds);
// Bytes per second: "812 B/s", "12.3 kB/s", "1.25 MB/s".
std::string FormatRate(double bytes_per_s);
// A large count with an SI suffix and 3 significant digits: "14.1M", "2.43T".
std::string FormatSi(double value);
// An integer with thousands separators: "14,078,256".
std::string FormatThousands(int64_t value);

}  // namespace ablate

#endif  // ABLATE_CLI_TABLE_H_
