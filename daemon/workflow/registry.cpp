#include "workflow/registry.hpp"

#include <algorithm>
#include <filesystem>
#include <memory>
#include <set>

#include <yaml-cpp/yaml.h>

namespace saga {

namespace fs = std::filesystem;

namespace {

// A version known already, as `path` holds it: the same definition, or one naming that file when
// another file holds the same text.
DefinitionPtr in_file(const DefinitionPtr& known, const std::string& path) {
  if (known->file == path) return known;
  auto copy = std::make_shared<Definition>(*known);
  copy->file = path;
  return copy;
}

// The `name` a workflow file gives, if it is readable YAML with a string there.
std::optional<std::string> declared_name(const std::string& path) {
  try {
    YAML::Node name = YAML::LoadFile(path)["name"];
    if (name.IsScalar()) return name.Scalar();
  } catch (const YAML::Exception&) {
  }
  return std::nullopt;
}

}  // namespace

WorkflowFiles workflow_files(const std::string& dir) {
  WorkflowFiles files;
  std::error_code& ec = files.error;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    auto ext = it->path().extension();
    if (ext != ".yaml" && ext != ".yml") continue;
    // Hidden files are an editor's or a deployment tool's, not workflows (as systemd's .d
    // directories treat them).
    if (it->path().filename().string().starts_with('.')) continue;
    std::error_code file_ec;
    if (it->is_regular_file(file_ec)) {
      files.paths.push_back(it->path().string());
    } else if (file_ec && file_ec != std::errc::no_such_file_or_directory) {
      files.unreadable.push_back(
          {it->path().string(),
           it->path().string() + ": cannot read the workflow file: " + file_ec.message()});
    }
  }
  std::sort(files.paths.begin(), files.paths.end());
  return files;
}

std::vector<DefinitionPtr> WorkflowRegistry::reload(const std::string& dir) {
  std::vector<DefinitionPtr> fresh;
  errors_.clear();
  unloaded_.clear();
  WorkflowFiles listed = workflow_files(dir);
  for (auto& unreadable : listed.unreadable) {
    errors_.push_back(std::move(unreadable));
    unloaded_.emplace_back();  // a file that may define any workflow
  }
  scanned_ = !listed.error;
  if (listed.error) {
    // Not a sign that the files are gone (a mount not there yet, a directory being swapped):
    // what was served goes on being served.
    errors_.push_back({dir, "cannot read workflows directory " + dir + ": " +
                                listed.error.message() +
                                "; still serving the workflows loaded before"});
    unloaded_.emplace_back();  // any workflow may be in there
    return fresh;
  }
  const std::vector<std::string>& paths = listed.paths;

  std::set<std::string> present(paths.begin(), paths.end());
  std::erase_if(files_, [&](const auto& kv) { return !present.contains(kv.first); });

  by_name_.clear();
  for (const auto& path : paths) {
    auto loaded = load_workflow_file(path, lookup_);
    FileEntry& entry = files_[path];
    if (loaded) {
      auto def = std::make_shared<Definition>(std::move(*loaded));
      if (auto known = by_version_.find(def->version); known != by_version_.end()) {
        entry.good = in_file(known->second, path);
      } else {
        by_version_[def->version] = def;
        entry.good = def;
        fresh.push_back(def);
      }
    } else {
      if (!entry.good && last_good_) entry.good = restore(path);
      std::string message = loaded.error().message;
      if (entry.good) {
        message += "\n" + path + ": still serving the last good version " + entry.good->version;
      }
      errors_.push_back({path, message});
      if (!entry.good) unloaded_.push_back(declared_name(path));
    }
  }
  // Two files with one name: the file that served the name keeps it and the other is the error,
  // so that a copy of a file (a draft beside it) never takes over, whatever its name sorts as.
  // Among files new to the name, the first in order wins.
  std::map<std::string, std::string> name_file;
  // The file that served a name: in this process, or before it, by the journal (last_good_ keeps
  // only the files that served their name).
  std::map<std::string, size_t> files_per_name;
  for (const auto& path : paths) {
    if (const DefinitionPtr& good = files_[path].good) ++files_per_name[good->name];
  }
  auto incumbent = [&](const std::string& path, const std::string& name) {
    if (auto served = name_file_.find(name); served != name_file_.end()) {
      return served->second == path;
    }
    if (!last_good_ || files_per_name[name] < 2) return false;
    DefinitionPtr kept = restore(path);
    return kept && kept->name == name;
  };
  for (bool incumbents : {true, false}) {
    for (const auto& path : paths) {
      const DefinitionPtr& good = files_[path].good;
      if (!good) continue;
      if (incumbents != incumbent(path, good->name)) continue;
      if (auto other = name_file.find(good->name); other != name_file.end()) {
        errors_.push_back({path, path + ": workflow " + good->name + " is already defined in " +
                                     other->second + "; rename one of them"});
        continue;
      }
      name_file[good->name] = path;
      by_name_[good->name] = good;
    }
  }
  name_file_ = std::move(name_file);
  return fresh;
}

DefinitionPtr WorkflowRegistry::restore(const std::string& path) {
  auto kept = last_good_(path);
  if (!kept) return nullptr;
  if (auto known = find_version(kept->version)) return in_file(known, path);
  // Checked when it loaded; run as it was, like a version an instance is pinned to.
  auto loaded = load_workflow(kept->source, path, nullptr, /*journaled=*/true);
  if (!loaded) return nullptr;
  auto def = std::make_shared<Definition>(std::move(*loaded));
  def->version = kept->version;
  by_version_[def->version] = def;
  return def;
}

std::map<std::string, std::string> WorkflowRegistry::file_versions() const {
  std::map<std::string, std::string> out;
  for (const auto& [name, path] : name_file_) out.emplace(path, by_name_.at(name)->version);
  return out;
}

DefinitionPtr WorkflowRegistry::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

DefinitionPtr WorkflowRegistry::find_version(const std::string& version) const {
  auto it = by_version_.find(version);
  return it == by_version_.end() ? nullptr : it->second;
}

DefinitionPtr WorkflowRegistry::adopt(const std::string& source, const std::string& version) {
  if (auto known = find_version(version)) return known;
  // A version journaled earlier is run as it was, without the current plugins' schemas: its
  // step types were checked when it was first loaded.
  auto loaded = load_workflow(source, "<journal:" + version + ">", nullptr, /*journaled=*/true);
  if (!loaded) {
    adopt_error_ = loaded.error().message;
    return nullptr;
  }
  auto def = std::make_shared<Definition>(std::move(*loaded));
  def->version = version;
  by_version_[version] = def;
  return def;
}

bool WorkflowRegistry::may_define(std::string_view name) const {
  if (by_name_.contains(std::string(name))) return false;
  return std::any_of(unloaded_.begin(), unloaded_.end(),
                     [&](const auto& declared) { return !declared || *declared == name; });
}

std::vector<DefinitionPtr> WorkflowRegistry::current() const {
  std::vector<DefinitionPtr> out;
  for (const auto& [name, def] : by_name_) out.push_back(def);
  return out;
}

}  // namespace saga
