// Status and StatusOr: errors that can happen (bad input, I/O, network) travel
// as values. Modeled on leveldb::Status; the codes mirror gRPC's so a Status
// crosses an RPC boundary without losing its meaning.
#ifndef ABLATE_COMMON_STATUS_H_
#define ABLATE_COMMON_STATUS_H_

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <utility>

namespace ablate {

class Status {
 public:
  // Same numbering as grpc::StatusCode.
  enum Code {
    kOk = 0,
    kCancelled = 1,
    kUnknown = 2,
    kInvalidArgument = 3,
    kDeadlineExceeded = 4,
    kNotFound = 5,
    kAlreadyExists = 6,
    kPermissionDenied = 7,
    kResourceExhausted = 8,
    kFailedPrecondition = 9,
    kAborted = 10,
    kOutOfRange = 11,
    kUnimplemented = 12,
    kInternal = 13,
    kUnavailable = 14,
    kDataLoss = 15,
    kUnauthenticated = 16,
  };

  Status() = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status OK() { return Status(); }
  static Status InvalidArgument(std::string m) { return {kInvalidArgument, std::move(m)}; }
  static Status NotFound(std::string m) { return {kNotFound, std::move(m)}; }
  static Status AlreadyExists(std::string m) { return {kAlreadyExists, std::move(m)}; }
  static Status FailedPrecondition(std::string m) { return {kFailedPrecondition, std::move(m)}; }
  static Status IOError(std::string m) { return {kUnavailable, std::move(m)}; }
  static Status Unavailable(std::string m) { return {kUnavailable, std::move(m)}; }
  static Status DataLoss(std::string m) { return {kDataLoss, std::move(m)}; }
  static Status Internal(std::string m) { return {kInternal, std::move(m)}; }
  static Status Aborted(std::string m) { return {kAborted, std::move(m)}; }
  static Status Cancelled(std::string m) { return {kCancelled, std::move(m)}; }
  static Status DeadlineExceeded(std::string m) { return {kDeadlineExceeded, std::move(m)}; }
  static Status OutOfRange(std::string m) { return {kOutOfRange, std::move(m)}; }
  static Status PermissionDenied(std::string m) { return {kPermissionDenied, std::move(m)}; }
  static Status Unauthenticated(std::string m) { return {kUnauthenticated, std::move(m)}; }
  static Status ResourceExhausted(std::string m) { return {kResourceExhausted, std::move(m)}; }

  bool ok() const { return code_ == kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }

  // "OK", or the code's name, a colon and the message.
  std::string ToString() const;
  static const char* CodeName(Code code);

  // Returns a copy whose message is "prefix: message".
  Status WithContext(const std::string& prefix) const {
    return ok() ? *this : Status(code_, prefix + ": " + message_);
  }

 private:
  Code code_ = kOk;
  std::string message_;
};

// A value or the Status that explains why there is none.
template <typename T>
class StatusOr {
 public:
  StatusOr(Status status) : status_(std::move(status)) {  // NOLINT: implicit by design
    if (status_.ok()) {
      std::fprintf(stderr, "StatusOr constructed from an OK status without a value\n");
      std::abort();
    }
  }
  StatusOr(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design

  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }

  // Crashes when there is no value: reading one is a broken invariant.
  T& value() & {
    CheckHasValue();
    return *value_;
  }
  const T& value() const& {
    CheckHasValue();
    return *value_;
  }
  T&& value() && {
    CheckHasValue();
    return std::move(*value_);
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  void CheckHasValue() const {
    if (!value_) {
      std::fprintf(stderr, "StatusOr has no value: %s\n", status_.ToString().c_str());
      std::abort();
    }
  }
  Status status_;
  std::optional<T> value_;
};

}  // namespace ablate

// Returns from the calling function when `expr` yields a non-OK Status.
#define ABLATE_RETURN_IF_ERROR(expr)             \
  do {                                           \
    ::ablate::Status _ablate_status = (expr);    \
    if (!_ablate_status.ok()) return _ablate_status; \
  } while (0)

#define ABLATE_CONCAT_INNER(a, b) a##b
#define ABLATE_CONCAT(a, b) ABLATE_CONCAT_INNER(a, b)

// `ABLATE_ASSIGN_OR_RETURN(auto x, Foo());` binds the value or returns the Status.
#define ABLATE_ASSIGN_OR_RETURN(lhs, expr) \
  ABLATE_ASSIGN_OR_RETURN_IMPL(ABLATE_CONCAT(_ablate_or_, __LINE__), lhs, expr)
#define ABLATE_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return tmp.status();                \
  lhs = std::move(tmp).value()

#endif  // ABLATE_COMMON_STATUS_H_
