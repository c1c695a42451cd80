// New plugin files are first loaded by a child process (sagad --try-plugins FILE...), so that a
// library whose initialization crashes, throws or hangs is refused instead of taking sagad down
// or leaving its dynamic loader locked.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "engine/time.hpp"

namespace saga {

// Loads `paths` in order in children of `exe` (one child, and one more after each file that
// ends one), each file given at most `timeout`: the reason to refuse each file that must not be
// loaded, by path. A file that loaded there, or was refused as any load would refuse it, is not
// named; neither is one whose trial could not be run at all (that is logged).
std::map<std::string, std::string> try_plugins_in_child(const std::string& exe,
                                                        const std::vector<std::string>& paths,
                                                        Millis timeout);

}  // namespace saga
