#include "workflow/registry.hpp"

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "temp_dir.hpp"

using namespace saga;
namespace fs = std::filesystem;

namespace {

// A temporary workflows directory.
struct Dir : test::TempDir {
  void write(const std::string& file, const std::string& text) const {
    std::ofstream(path + "/" + file) << text;
  }
};

constexpr const char* kGood = "name: wf\nsteps:\n  - {name: a, uses: noop}\n";
constexpr const char* kBroken = "name: wf\nsteps:\n  - {name: a, uses: noop, retyr: 1}\n";

}  // namespace

TEST_CASE("the registry tells which workflows a file that failed to load may define",
          "[registry]") {
  Dir dir;
  dir.write("other.yaml", "name: other\nsteps:\n  - {name: a, uses: noop}\n");
  WorkflowRegistry registry(nullptr);  // step types unchecked

  SECTION("a broken file names its workflow") {
    dir.write("wf.yaml", kBroken);
    registry.reload(dir.path);
    REQUIRE(registry.errors().size() == 1);
    CHECK(registry.find("wf") == nullptr);
    CHECK(registry.may_define("wf"));
    CHECK(!registry.may_define("gone"));
    CHECK(!registry.may_define("other"));  // loaded: not in doubt
    dir.write("wf.yaml", kGood);
    registry.reload(dir.path);
    CHECK(registry.find("wf") != nullptr);
    CHECK(!registry.may_define("wf"));
  }
  SECTION("a file that is not YAML may define any workflow") {
    dir.write("wf.yaml", "name: [wf\n");
    registry.reload(dir.path);
    REQUIRE(registry.errors().size() == 1);
    CHECK(registry.may_define("wf"));
    CHECK(registry.may_define("gone"));
    CHECK(!registry.may_define("other"));  // loaded: not in doubt
    fs::remove(dir.path + "/wf.yaml");
    registry.reload(dir.path);
    CHECK(!registry.may_define("wf"));
  }
  SECTION("a file without a name may define any workflow") {
    dir.write("wf.yaml", "nmae: wf\nsteps:\n  - {name: a, uses: noop}\n");
    registry.reload(dir.path);
    REQUIRE(registry.errors().size() == 1);
    CHECK(registry.may_define("wf"));
  }
  SECTION("a file that breaks while its last good version serves is not in doubt") {
    dir.write("wf.yaml", kGood);
    registry.reload(dir.path);
    dir.write("wf.yaml", kBroken);
    registry.reload(dir.path);
    REQUIRE(registry.errors().size() == 1);
    CHECK(registry.find("wf") != nullptr);
    CHECK(!registry.may_define("wf"));
  }
  SECTION("a loop of symbolic links is an error, not fatal") {
    fs::create_symlink("b.yaml", dir.path + "/a.yaml");
    fs::create_symlink("a.yaml", dir.path + "/b.yaml");
    fs::create_symlink("self.yaml", dir.path + "/self.yaml");
    fs::create_symlink("nowhere.yaml", dir.path + "/dangling.yaml");  // skipped
    dir.write("wf.yaml", kGood);
    registry.reload(dir.path);
    REQUIRE(registry.errors().size() == 3);
    const std::string want =
        dir.path + "/a.yaml: cannot read the workflow file: Too many levels of symbolic links";
    CHECK(std::any_of(registry.errors().begin(), registry.errors().end(),
                      [&](const LoadError& e) { return e.error == want; }));
    CHECK(registry.find("wf") != nullptr);
    CHECK(registry.find("other") != nullptr);
    CHECK(registry.may_define("gone"));  // a loop could be any workflow
  }
  SECTION("an unreadable directory may hold any workflow") {
    registry.reload(dir.path + "/missing");
    CHECK(registry.may_define("wf"));
  }
}

TEST_CASE("a second file with a workflow's name never takes the workflow over", "[registry]") {
  Dir dir;
  WorkflowRegistry registry(nullptr);
  dir.write("order.yaml", "name: order\nsteps:\n  - {name: live, uses: noop}\n");
  registry.reload(dir.path);
  REQUIRE(registry.find("order"));

  // A draft copy that sorts first, with other content and with the same content.
  for (const char* draft : {"name: order\nsteps:\n  - {name: draft, uses: noop}\n",
                            "name: order\nsteps:\n  - {name: live, uses: noop}\n"}) {
    dir.write("order-new.yaml", draft);
    registry.reload(dir.path);
    REQUIRE(registry.find("order"));
    CHECK(registry.find("order")->steps[0].name == "live");
    REQUIRE(registry.errors().size() == 1);
    CHECK(registry.errors()[0].file == dir.path + "/order-new.yaml");
    CHECK(registry.errors()[0].error == dir.path + "/order-new.yaml: workflow order is already " +
                                            "defined in " + dir.path +
                                            "/order.yaml; rename one of them");
  }

  // Once the first file is gone, the copy serves the name.
  dir.write("order-new.yaml", "name: order\nsteps:\n  - {name: draft, uses: noop}\n");
  fs::remove(dir.path + "/order.yaml");
  registry.reload(dir.path);
  REQUIRE(registry.find("order"));
  CHECK(registry.find("order")->steps[0].name == "draft");
  CHECK(registry.errors().empty());

  // Two files new to a name at once: the first in order serves it.
  dir.write("a.yaml", "name: pair\nsteps:\n  - {name: first, uses: noop}\n");
  dir.write("b.yaml", "name: pair\nsteps:\n  - {name: second, uses: noop}\n");
  registry.reload(dir.path);
  REQUIRE(registry.find("pair"));
  CHECK(registry.find("pair")->steps[0].name == "first");
}

TEST_CASE("a file that fails at its first load serves the version it last loaded as",
          "[registry]") {
  Dir dir;
  std::map<std::string, WorkflowRegistry::Kept> journaled;
  WorkflowRegistry first(nullptr);
  dir.write("wf.yaml", kGood);
  first.reload(dir.path);
  const auto versions = first.file_versions();
  REQUIRE(versions.size() == 1);
  const std::string version = versions.at(dir.path + "/wf.yaml");
  journaled[dir.path + "/wf.yaml"] = {version, kGood};

  // As after a restart: a new registry, the file broken meanwhile.
  dir.write("wf.yaml", kBroken);
  WorkflowRegistry after(nullptr, [&](const std::string& path) {
    auto it = journaled.find(path);
    return it == journaled.end() ? std::nullopt : std::optional<WorkflowRegistry::Kept>(it->second);
  });
  auto fresh = after.reload(dir.path);
  CHECK(fresh.empty());  // in the journal already
  REQUIRE(after.find("wf"));
  CHECK(after.find("wf")->version == version);
  CHECK(after.find("wf")->file == dir.path + "/wf.yaml");
  REQUIRE(after.errors().size() == 1);
  CHECK(
      after.errors()[0].error.ends_with("wf.yaml: still serving the last good version " + version));
  CHECK(!after.may_define("wf"));
  CHECK(after.file_versions() == versions);

  // A file with nothing journaled for it is not loaded, as before.
  dir.write("new.yaml", "name: fresh\nsteps:\n  - {name: a, uses: noop, retyr: 1}\n");
  after.reload(dir.path);
  CHECK(after.find("fresh") == nullptr);
  CHECK(after.may_define("fresh"));
}

TEST_CASE("after a restart the file that served a workflow keeps it from a copy", "[registry]") {
  Dir dir;
  std::map<std::string, WorkflowRegistry::Kept> journaled;
  auto from_journal = [&](const std::string& path) {
    auto it = journaled.find(path);
    return it == journaled.end() ? std::nullopt : std::optional<WorkflowRegistry::Kept>(it->second);
  };
  const std::string live = "name: order\nsteps:\n  - {name: live, uses: noop}\n";
  dir.write("order.yaml", live);
  dir.write("a-draft.yaml", "name: order\nsteps:\n  - {name: draft, uses: noop}\n");
  WorkflowRegistry before(nullptr, from_journal);
  // The draft came later: only order.yaml is journaled as serving.
  fs::remove(dir.path + "/a-draft.yaml");
  before.reload(dir.path);
  dir.write("a-draft.yaml", "name: order\nsteps:\n  - {name: draft, uses: noop}\n");
  before.reload(dir.path);
  REQUIRE(before.find("order"));
  CHECK(before.find("order")->steps[0].name == "live");
  const auto serving = before.file_versions();
  CHECK(serving.size() == 1);  // the draft serves nothing: it is not kept
  for (const auto& [path, version] : serving) journaled[path] = {version, live};

  WorkflowRegistry after(nullptr, from_journal);
  after.reload(dir.path);
  REQUIRE(after.find("order"));
  CHECK(after.find("order")->steps[0].name == "live");
  REQUIRE(after.errors().size() == 1);
  CHECK(after.errors()[0].file == dir.path + "/a-draft.yaml");
}

TEST_CASE("a directory that cannot be read keeps what it served", "[registry]") {
  Dir dir;
  dir.write("wf.yaml", kGood);
  WorkflowRegistry registry(nullptr);
  registry.reload(dir.path);
  REQUIRE(registry.scanned());
  const auto versions = registry.file_versions();
  REQUIRE(versions.size() == 1);

  fs::rename(dir.path, dir.path + ".moved");
  registry.reload(dir.path);
  CHECK(!registry.scanned());
  CHECK(registry.find("wf") != nullptr);
  CHECK(registry.file_versions() == versions);
  REQUIRE(registry.errors().size() == 1);
  CHECK(registry.errors()[0].error.ends_with("; still serving the workflows loaded before"));
  fs::rename(dir.path + ".moved", dir.path);
  registry.reload(dir.path);
  CHECK(registry.scanned());
  CHECK(registry.errors().empty());
}

TEST_CASE("a byte-identical copy is named as itself, not as the file it copies", "[registry]") {
  Dir dir;
  WorkflowRegistry registry(nullptr);
  dir.write("order.yaml", kGood);
  registry.reload(dir.path);
  dir.write("a-copy.yaml", kGood);
  fs::remove(dir.path + "/order.yaml");
  registry.reload(dir.path);
  REQUIRE(registry.find("wf"));
  CHECK(registry.find("wf")->file == dir.path + "/a-copy.yaml");
  CHECK(registry.file_versions().contains(dir.path + "/a-copy.yaml"));
}

TEST_CASE("hidden files are not workflows", "[registry]") {
  Dir dir;
  dir.write("wf.yaml", kGood);
  dir.write(".wf.yaml", kBroken);  // an editor's copy, half written
  dir.write(".other.yml", "name: other\nsteps:\n  - {name: a, uses: noop}\n");
  const WorkflowFiles files = workflow_files(dir.path);
  CHECK(files.paths == std::vector<std::string>{dir.path + "/wf.yaml"});
  WorkflowRegistry registry(nullptr);
  registry.reload(dir.path);
  CHECK(registry.find("wf") != nullptr);
  CHECK(registry.find("other") == nullptr);
  CHECK(registry.errors().empty());
}
