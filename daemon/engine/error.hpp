// Errors as values: a code and a sentence a user can act on.
#pragma once

#include <expected>
#include <string>
#include <utility>

namespace saga {

enum class ErrorCode {
  invalid_argument,     // the caller's input is wrong (bad YAML, bad JSON, unknown step)
  not_found,            // no such instance, workflow, step
  failed_precondition,  // the operation does not apply in the current state
  already_exists,
  unavailable,  // a resource cannot be used now (journal unwritable, daemon stopping)
  internal,
};

struct Error {
  ErrorCode code = ErrorCode::internal;
  std::string message;
};

template <class T>
using Result = std::expected<T, Error>;

inline std::unexpected<Error> make_error(ErrorCode code, std::string message) {
  return std::unexpected(Error{code, std::move(message)});
}

}  // namespace saga
