// Typed exceptions. The library throws these with the offending value in the message;
// the CLI's main catches once, prints one line and exits non-zero.
#pragma once
#include <stdexcept>
#include <string>

namespace unwedge {

/// Base of every unwedge error.
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
/// A file could not be opened, read, written or renamed.
struct IoError : Error {
  using Error::Error;
};
/// A file's content is malformed (bad header field, truncated data, NaN in data).
struct FormatError : Error {
  using Error::Error;
};
/// An option or argument has an impossible value.
struct ValueError : Error {
  using Error::Error;
};
/// Tensor or volume shapes do not fit together.
struct ShapeError : Error {
  using Error::Error;
};
/// An output exists and --overwrite was not given.
struct ExistsError : Error {
  using Error::Error;
};

}  // namespace unwedge
