// sagactl's output for people: relative times, durations, aligned tables, colour, and the
// Prometheus text exposition of `stats`. Pure functions of their arguments (the clock and the
// terminal are passed in), so they are unit-tested without a daemon.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "engine/time.hpp"

namespace saga::ctl {

using json = nlohmann::json;

// "now" within a second, else the largest whole unit: "3s ago", "5m ago", "2h ago", "4d ago",
// and "in 2m" for a time ahead of `now`.
std::string relative_time(TimePoint t, TimePoint now);
// The same for an RFC 3339 text from the daemon; "-" for null or a text that does not parse.
std::string relative_time(const json& rfc3339, TimePoint now);

// A duration in milliseconds for people: "850ms", "1.5s", "2m3s", "1h2m".
std::string human_duration(double ms);

// Colour only when stdout is a terminal and NO_COLOR is unset or empty (no-color.org).
bool color_wanted(bool stdout_is_tty, const char* no_color_env, const char* term_env);

// Wraps an instance or step state in its colour (green ended well, red needs an operator,
// yellow undoing, cyan in progress); unchanged when `color` is false.
std::string paint_state(std::string_view state, bool color);
// `text` in the colour of `state`.
std::string paint_as(std::string_view state, std::string_view text, bool color);
// A history event type in the colour of where it leads.
std::string paint_event(std::string_view type, bool color);
std::string bold(std::string_view text, bool color);
std::string dim(std::string_view text, bool color);

// Rows as columns two spaces apart; escape sequences take no width.
std::string render_table(const std::vector<std::vector<std::string>>& rows);
size_t visible_width(std::string_view text);

// `stats --json` as Prometheus text exposition (version 0.0.4): # HELP and # TYPE before each
// family, names saga_*, counters ending in _total, labels for workflow and state.
std::string render_prometheus(const json& stats);

}  // namespace saga::ctl
