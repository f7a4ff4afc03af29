#include "cli/table.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <cstring>

namespace ablate {

namespace {

// Numbers, counts with separators or suffixes, durations and rates all start
// with a digit; "-" stands for a missing one.
bool IsNumber(const std::string& cell) {
  if (cell == "-") return true;
  const size_t first = cell.size() > 1 && cell[0] == '-' ? 1 : 0;
  return first < cell.size() && std::isdigit(static_cast<unsigned char>(cell[first]));
}

std::string CsvCell(const std::string& cell) {
  if (cell.find_first_of(",\"\r\n") == std::string::npos) return cell;
  std::string quoted = "\"";
  for (char c : cell) {
    if (c == '"') quoted += '"';
    quoted += c;
  }
  return quoted + "\"";
}

}  // namespace

StatusOr<Format> ParseFormat(const std::string& value, const std::vector<Format>& allowed) {
  std::string names;
  for (Format f : allowed) {
    if (value == FormatName(f)) return f;
    names += names.empty() ? "" : ", ";
    names += FormatName(f);
  }
  return Status::InvalidArgument("--format: \"" + value + "\" is not one of " + names);
}

const char* FormatName(Format format) {
  switch (format) {
    case Format::kTable:
      return "table";
    case Format::kJson:
      return "json";
    case Format::kCsv:
      return "csv";
  }
  return "?";
}

void Table::AddRow(std::vector<std::string> cells) {
  if (cells.size() != header_.size()) {
    std::fprintf(stderr, "Table row has %zu cells for %zu columns\n", cells.size(), header_.size());
    std::abort();
  }
  rows_.push_back(std::move(cells));
}

std::string Table::ToText() const {
  const size_t columns = header_.size();
  std::vector<size_t> width(columns);
  std::vector<bool> numeric(columns, !rows_.empty());
  for (size_t c = 0; c < columns; ++c) {
    width[c] = header_[c].size();
    for (const auto& row : rows_) {
      width[c] = std::max(width[c], row[c].size());
      numeric[c] = numeric[c] && IsNumber(row[c]);
    }
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string out;
    for (size_t c = 0; c < columns; ++c) {
      const bool last = c + 1 == columns;
      if (numeric[c]) {
        out += fmt::format("{:>{}}", cells[c], width[c]);
      } else {
        out += last ? cells[c] : fmt::format("{:<{}}", cells[c], width[c]);
      }
      if (!last) out += "  ";
    }
    return out + "\n";
  };
  std::string out = line(header_);
  for (const auto& row : rows_) out += line(row);
  return out;
}

std::string Table::ToCsv() const {
  auto line = [](const std::vector<std::string>& cells) {
    std::string out;
    for (size_t c = 0; c < cells.size(); ++c) out += (c ? "," : "") + CsvCell(cells[c]);
    return out + "\n";
  };
  std::string out = line(header_);
  for (const auto& row : rows_) out += line(row);
  return out;
}

std::vector<std::string> FactorHeader(const std::vector<std::string>& keys) {
  auto short_name = [](const std::string& key) {
    const size_t dot = key.rfind('.');
    return dot == std::string::npos ? key : key.substr(dot + 1);
  };
  std::vector<std::string> header;
  for (const std::string& key : keys) {
    const std::string name = short_name(key);
    const bool shared = std::count_if(keys.begin(), keys.end(), [&](const std::string& other) {
                          return short_name(other) == name;
                        }) > 1;
    header.push_back(shared ? key : name);
  }
  return header;
}

std::string FactorCell(const nlohmann::json& value) {
  return value.is_string() ? value.get<std::string>() : value.dump();
}

std::string FormatDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "-";
  const int64_t s = static_cast<int64_t>(std::llround(seconds));
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
  if (s < 86400) return fmt::format("{}h{:02}m", s / 3600, s / 60 % 60);
  return fmt::format("{}d{:02}h", s / 86400, s / 3600 % 24);
}

std::string FormatRate(double bytes_per_s) {
  if (!std::isfinite(bytes_per_s) || bytes_per_s <= 0) return "-";
  if (bytes_per_s >= 1e6) return fmt::format("{:.2f} MB/s", bytes_per_s / 1e6);
  if (bytes_per_s >= 1e3) return fmt::format("{:.1f} kB/s", bytes_per_s / 1e3);
  return fmt::format("{:.0f} B/s", bytes_per_s);
}

std::string FormatSi(double value) {
  static const char* const kSuffixes[] = {"", "k", "M", "G", "T", "P", "E"};
  int i = 0;
  while (std::fabs(value) >= 999.5 && i < 6) {
    value /= 1000;
    ++i;
  }
  const int decimals = std::fabs(value) >= 99.95 ? 0 : std::fabs(value) >= 9.995 ? 1 : 2;
  if (i == 0 && value == std::floor(value)) return fmt::format("{:.0f}", value);
  return fmt::format("{:.{}f}{}", value, decimals, kSuffixes[i]);
}

std::string FormatThousands(int64_t value) {
  std::string digits = std::to_string(value < 0 ? -value : value);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return value < 0 ? "-" + out : out;
}

std::string ShellQuote(const std::vector<std::string>& argv) {
  std::string line;
  for (const std::string& argument : argv) {
    if (!line.empty()) line += ' ';
    const bool bare =
        !argument.empty() && std::all_of(argument.begin(), argument.end(), [](char c) {
          return std::isalnum(static_cast<unsigned char>(c)) ||
                 (c != '\0' && std::strchr("_@%+=:,./-", c) != nullptr);
        });
    if (bare) {
      line += argument;
      continue;
    }
    line += '\'';
    for (char c : argument) line += c == '\'' ? std::string("'\\''") : std::string(1, c);
    line += '\'';
  }
  return line;
}

}  // namespace ablate
