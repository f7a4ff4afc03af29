// Reads a database the way `sqlite3 FILE 'select ...'` does, for checking
// what the coordinator committed.
#ifndef ABLATE_TESTS_SUPPORT_SQLITE_QUERY_H_
#define ABLATE_TESTS_SUPPORT_SQLITE_QUERY_H_

#include <string>
#include <vector>

namespace ablate::testing {

// Rows of `sql` on `db_path`, opened read-only; every value as text ("" for
// NULL). Fails the calling test on an SQL error.
std::vector<std::vector<std::string>> Query(const std::string& db_path, const std::string& sql);

// The single value of a one-row, one-column query, as int64.
int64_t QueryInt(const std::string& db_path, const std::string& sql);

}  // namespace ablate::testing

#endif  // ABLATE_TESTS_SUPPORT_SQLITE_QUERY_H_
