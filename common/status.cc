#include "common/status.h"

namespace ablate {

const char* Status::CodeName(Code code) {
  switch (code) {
    case kOk: return "OK";
    case kCancelled: return "CANCELLED";
    case kUnknown: return "UNKNOWN";
    case kInvalidArgument: return "INVALID_ARGUMENT";
    case kDeadlineExceeded: return "DEADLINE_EXCEEDED";
    case kNotFound: return "NOT_FOUND";
    case kAlreadyExists: return "ALREADY_EXISTS";
    case kPermissionDenied: return "PERMISSION_DENIED";
    case kResourceExhausted: return "RESOURCE_EXHAUSTED";
    case kFailedPrecondition: return "FAILED_PRECONDITION";
    case kAborted: return "ABORTED";
    case kOutOfRange: return "OUT_OF_RANGE";
    case kUnimplemented: return "UNIMPLEMENTED";
    case kInternal: return "INTERNAL";
    case kUnavailable: return "UNAVAILABLE";
    case kDataLoss: return "DATA_LOSS";
    case kUnauthenticated: return "UNAUTHENTICATED";
  }
  return "UNKNOWN";
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  return std::string(CodeName(code_)) + ": " + message_;
}

}  // namespace ablate
