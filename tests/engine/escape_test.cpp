#include "engine/escape.hpp"

#include <catch2/catch.hpp>

using saga::escape_control;

TEST_CASE("control characters are escaped as in C, other text is kept as it is") {
  CHECK(escape_control("plain text, café") == "plain text, café");
  CHECK(escape_control("a\nb\r\tc") == "a\\nb\\r\\tc");
  CHECK(escape_control("\x1b[2J\x1b[31mred") == "\\x1b[2J\\x1b[31mred");
  CHECK(escape_control(std::string_view("nul\0end", 7)) == "nul\\x00end");
  CHECK(escape_control("del\x7f") == "del\\x7f");
  // C1 controls in UTF-8: U+009B is a CSI to some terminals.
  CHECK(escape_control("\xc2\x9b"
                       "31m") == "\\u009b31m");
  CHECK(escape_control("\xc2\xa0") == "\xc2\xa0");  // U+00A0 is text
  CHECK(escape_control("\xc2") == "\xc2");          // a cut sequence is left alone
  CHECK(escape_control("") == "");
}
