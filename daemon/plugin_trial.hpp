// New plugin files are first loaded by a child process (sagad --try-plugins FILE...), so that a
// library whose initialization crashes, throws or hangs is refused instead of taking sagad down
// or leaving its dynamic loader locked.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "engine/time.hpp"
#include "plugin_host/plugin_registry.hpp"

namespace saga {

// Loads `paths` in order in children of `exe` (one child, and one more after each file that
// ends one): each file gets at most `per_file`, and all of them at most `total`, as sagad's loop
// waits meanwhile. The files that must not be loaded, by path. A file that loaded there, or was
// refused as any load would refuse it, is not named; neither are the files left when the trial
// cannot be run at all (that is logged, and they are loaded as they are).
std::map<std::string, PluginRegistry::TrialRefusal> try_plugins_in_child(
    const std::string& exe, const std::vector<std::string>& paths, Millis per_file, Millis total);

}  // namespace saga
