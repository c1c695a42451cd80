// How deeply a JSON text nests. Copying and printing a JSON value recurse once per level, so a
// text nested hundreds of thousands of levels deep (a 1 MiB request can be) would exhaust the
// stack of whoever handles it. sagad refuses requests and step outputs that nest deeper than
// kMaxJsonDepth before it parses them, and a step type that parses JSON from elsewhere (a
// program's output, an HTTP body) can check the same way.
#pragma once

#include <cstddef>
#include <string_view>

namespace saga {

inline constexpr size_t kMaxJsonDepth = 256;

// Whether `text` opens more than `limit` arrays and objects inside one another. Brackets in
// strings do not count; the text need not be valid JSON (the parse says whether it is).
inline bool json_nests_deeper_than(std::string_view text, size_t limit = kMaxJsonDepth) noexcept {
  size_t depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // the escaped character, which may be a quote
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) return true;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return false;
}

}  // namespace saga
