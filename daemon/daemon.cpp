#include "daemon.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <unistd.h>
#include <uv.h>
#include <saga/json_depth.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <thread>
#include <unordered_map>

#include "control/control_server.hpp"
#include "engine/engine.hpp"
#include "engine/json_text.hpp"
#include "executor/executor.hpp"
#include "executor/loop_queue.hpp"
#include "journal/journal_writer.hpp"
#include "plugin_host/plugin_registry.hpp"
#include "plugin_host/step_schema.hpp"
#include "plugin_trial.hpp"
#include "scheduler/scheduler.hpp"
#include "systemd_notifier.hpp"
#include "workflow/loader.hpp"
#include "workflow/registry.hpp"
#include "workflow/template.hpp"

#ifndef SAGA_VERSION
#define SAGA_VERSION "0.0.0"
#endif

namespace saga {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Conn = std::weak_ptr<ControlServer::Connection>;

enum class TimerKind { retry, deadline, attempt_timeout, stop_grace, schedule };

struct TimerEntry {
  std::string id;
  TimerKind kind = TimerKind::retry;
  uint32_t step = 0;
  Phase phase = Phase::run;
  uint32_t attempt = 0;
};

using Timers = std::multimap<TimePoint, TimerEntry>;

struct RunningAttempt {
  uint32_t step = 0;
  Phase phase = Phase::run;
  uint32_t attempt = 0;
  std::shared_ptr<std::atomic<bool>> cancel;
  std::optional<Timers::iterator> timeout;
  // For a step with a timeout: when a worker began the attempt (Unix ms; 0 while it waits for
  // one). The timeout counts from then.
  std::shared_ptr<std::atomic<int64_t>> began_ms;
  bool timed_out = false;       // told to stop by its timeout; what it returns but success is that
  Executor::Ticket ticket = 0;  // on the worker pool; 0 when it runs on the loop thread
};

struct Waiter {
  Conn conn;
  json id;
  bool existing = false;  // a `start` of an id that was started before
};

// An instance that is not yet terminal, as the loop thread keeps it.
struct Live {
  DefinitionPtr def;
  Instance inst;
  std::vector<RunningAttempt> running;
  std::vector<Waiter> waiters;  // `start --wait` callers
  // Calls that started this id again before its first write was durable (await_durable tokens):
  // they are told it exists once it does.
  std::vector<uint64_t> existing_acks;
  bool created_durable = false;
  uint64_t durable_seq = 0;  // the last event of it known to be in the journal
  std::optional<Timers::iterator> deadline;
  // The state its journal record was last written in (see InstanceWrite::state).
  InstanceState recorded = InstanceState::running;
};

// A `watch` subscription: the connection gets every durable event that matches, as `event`
// notifications. An instance watch first gets the history already journaled; `last_seq`
// keeps the two from overlapping.
struct Watch {
  Conn conn;
  std::optional<std::string> instance;
  std::optional<std::string> workflow;
  uint64_t last_seq = 0;
  // What the replay of an instance's history queued at once: room on top of the bound below, as
  // the history is there to be read and is no sign of a slow reader.
  size_t replay_bytes = 0;
};

// A watcher whose unread events pass this (beyond its replay) is dropped: it never holds up the
// loop or the other clients, and costs at most this much memory.
constexpr size_t kWatchBacklogBytes = 1 << 20;
// A watch of one instance first gets its history, queued at once up to this much (step outputs
// may be large); past it the watch is dropped, and `sagactl inspect --history` reads it.
constexpr size_t kMaxReplayBytes = size_t{64} << 20;
// How long a dropped watcher has to read the notice that says why before it is cut off.
constexpr uint64_t kWatchDropGraceMs = 10'000;
// How long a new plugin file's initialization may take in the child that loads it first, and
// all of a load's new files: the loop waits meanwhile (systemd's watchdog allows 30 s).
constexpr Millis kPluginTrialPerFile{5'000};
constexpr Millis kPluginTrialTotal{10'000};
// After a drain's grace period, how long attempts that were told to stop may take to.
constexpr Millis kDrainStopWindow{2000};

// The largest step output (its JSON text) that is journaled; a larger one fails the step.
constexpr size_t kMaxOutputBytes = size_t{32} << 20;

// The longest step error journaled and logged, and the longest log line of a step type, in
// bytes: they are read by people, and every attempt's error stays in the instance's history.
constexpr size_t kMaxErrorBytes = size_t{64} << 10;

// `text` cut to kMaxErrorBytes between UTF-8 characters, with a note that says how much was cut.
std::string cut_long(std::string text, std::string_view what) {
  if (text.size() <= kMaxErrorBytes) return text;
  size_t keep = kMaxErrorBytes;
  // Back to the start of the character that the cut would split (at most 3 continuation bytes).
  for (int i = 0; i < 3 && (static_cast<unsigned char>(text[keep]) & 0xC0) == 0x80; ++i) --keep;
  const size_t cut = text.size() - keep;
  text.resize(keep);
  text += fmt::format(" [{} cut here: {} more bytes]", what, cut);
  return text;
}

// A step type's error as it is logged and journaled: never empty, and no longer than
// kMaxErrorBytes.
std::string step_error(std::string error) {
  if (error.empty()) return std::string(kNoErrorMessage);
  return cut_long(std::move(error), "error");
}

// Between two retention passes while there is more to look at.
constexpr uint64_t kRetentionPassGapMs = 20;

// The longest the loop waits for a timer before it looks at the wall clock again.
constexpr Millis kWallClockStep{5'000};

// Counters since this sagad started, for `sagactl stats`. Every time an instance settles it
// counts once in its state (a failed instance that is retried and then completes counts in
// both). Durations come from a bounded ring of the most recent settles.
constexpr size_t kDurationSamples = 1024;
struct WorkflowStats {
  uint64_t started = 0, completed = 0, compensated = 0, failed = 0, compensation_failed = 0;
  std::vector<int64_t> durations_ms;  // the most recent kDurationSamples settles
  uint64_t settled = 0;
  uint64_t duration_sum_ms = 0;  // over every settle
};

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(values.size())));
  return values[std::clamp<size_t>(rank, 1, values.size()) - 1];
}

std::optional<std::string> read_secret(const std::string& dir, const std::string& name) {
  if (dir.empty() || name.find('/') != std::string::npos || name.starts_with('.')) {
    return std::nullopt;
  }
  std::ifstream in(fs::path(dir) / name, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  std::string value = text.str();
  while (!value.empty() && (value.back() == '\n' || value.back() == '\r')) value.pop_back();
  return value;
}

// The transition ends in a terminal or parked state.
bool settled_now(const Transition& t) {
  if (t.events.empty()) return false;
  switch (t.events.back().type) {
    case EventType::instance_completed:
    case EventType::instance_compensated:
    case EventType::instance_failed:
    case EventType::instance_compensation_failed:
      return true;
    default:
      return false;
  }
}

// The keys of `input.required` that `input` lacks, as an error; nullopt when none.
std::optional<std::string> missing_input(const Definition& def, const json& input) {
  std::string list;
  for (const auto& key : def.required_input) {
    if (!input.contains(key)) list += (list.empty() ? "" : ", ") + key;
  }
  if (list.empty()) return std::nullopt;
  return "workflow " + def.name + " needs input keys: " + list;
}

void mask(std::string& text, const std::string& secret) {
  for (size_t at = text.find(secret); at != std::string::npos; at = text.find(secret, at + 3)) {
    text.replace(at, secret.size(), "***");
  }
}

// Masks each secret as it is, and as it reads inside a JSON string when it holds characters that
// JSON escapes (quotes, newlines): a step's output is JSON text.
void mask_secrets(std::string& text, const std::vector<std::string>& secrets) {
  for (const auto& secret : secrets) {
    mask(text, secret);
    std::string escaped = json(secret).dump(-1, ' ', false, json::error_handler_t::replace);
    escaped = escaped.substr(1, escaped.size() - 2);
    if (escaped != secret) mask(text, escaped);
  }
}

class Daemon final : private ScheduleHost {
 public:
  explicit Daemon(const Config& config) : config_(config) {
    // New plugin files are loaded in a child first; /proc/self/exe is this very binary, even
    // after a package upgrade replaced its file.
    plugins_.set_trial([](const std::vector<std::string>& paths) {
      return try_plugins_in_child("/proc/self/exe", paths, kPluginTrialPerFile, kPluginTrialTotal);
    });
  }
  ~Daemon() {
    if (lock_fd_ >= 0) ::close(lock_fd_);
  }
  int run();

 private:
  // Start-up.
  Result<void> open();
  Result<void> lock_state_dir();
  void load_plugins();
  // Loads the workflows directory again and logs what changed: versions loaded, workflows no
  // longer defined, and load errors that are new (all of them when `log_every_error`, as when an
  // operator asks with SIGHUP or at start).
  void reload_workflows(bool log_every_error = false);
  void recover_instances();

  // Transitions.
  void commit(Live& live, Transition&& t, bool created, std::function<void()> after = nullptr);
  void on_durable(const std::string& id, const std::vector<Action>& actions, bool settled,
                  const std::string& state, uint64_t last_seq);
  void perform(Live& live, const Action& action);
  // While draining, transitions start no attempts: the restart starts them (see Starts).
  Starts starts() const { return draining_ ? Starts::none : Starts::attempts; }
  void dispatch(Live& live, uint32_t step, Phase phase, uint32_t attempt);
  void on_attempt_done(const std::string& id, const AttemptResult& result);
  // The drain's grace period is over: running attempts are told to stop.
  void stop_running_attempts();
  // Gives up on an attempt that was told to stop and has not: its worker is replaced. False
  // when it has returned meanwhile, and its result is on its way to the loop.
  bool abandon(const std::string& id, const RunningAttempt& a);
  void on_journal_failure(const Error& error);
  // Calls answered once their transition is durable; a journal failure answers them with an
  // error instead, so that no client waits for an acknowledgement that cannot come.
  uint64_t await_durable(const ControlServer::Call& call);
  std::optional<Waiter> take_awaiting(uint64_t token);
  void publish(const std::string& id, const std::string& workflow,
               const std::vector<std::pair<uint64_t, std::string>>& events);
  bool send_event(Watch& w, const std::string& id, const std::string& workflow, const json& event);
  void drop_watch(Watch& w, const std::string& why);
  Live* find_live(const std::string& id);
  // A new in-memory instance `id` of `def`, not yet started or replayed.
  Live& add_live(const std::string& id, DefinitionPtr def);

  // Timers.
  Timers::iterator add_timer(TimePoint at, TimerEntry entry);
  void rearm_timer();
  void on_timer_fired();
  void handle_timer(const TimerEntry& entry, TimePoint now);

  // Control.
  void on_call(ControlServer::Call call);
  void handle_start(ControlServer::Call& call);
  void handle_inspect(ControlServer::Call& call);
  void handle_list(ControlServer::Call& call);
  void handle_retry_or_cancel(ControlServer::Call& call, bool is_retry);
  void handle_watch(ControlServer::Call& call);
  json workflows_json() const;
  json stats_json() const;
  json journal_health() const;  // {"ok", "error"}, for ping and stats
  void count_settled(const Live& live);
  json plugins_json() const;
  Result<json> stored_instance(const std::string& id, bool history);
  std::string new_instance_id(TimePoint created_at);

  // Retention: deletes terminal instances older than --retention, a batch per tick.
  void expire_instances();
  void arm_retention(uint64_t first_ms);

  // Schedules (DESIGN §3 `schedule:`): the Scheduler decides, these start and journal.
  void start_scheduler();
  void sync_schedules();
  void on_schedules_due();
  void arm_schedules();
  void handle_schedules(ControlServer::Call& call);
  FireStart start_fire(const DefinitionPtr& def, const std::string& id, json input) override;
  bool is_running(const std::string& id) const override;
  void persist(const std::string& key, std::optional<std::string> value,
               std::function<void()> on_durable) override;
  // The STATUS= line systemd shows: instance and attempt counts.
  std::string service_status() const;

  // Shutdown.
  void begin_drain(const char* why);
  void finish_drain();

  const Config& config_;
  uv_loop_t loop_{};
  std::unique_ptr<Journal> journal_;
  std::unique_ptr<LoopQueue> loop_queue_;
  std::unique_ptr<JournalWriter> writer_;
  std::unique_ptr<Executor> executor_;
  std::unique_ptr<ControlServer> server_;
  std::unique_ptr<SystemdNotifier> notifier_;
  PluginRegistry plugins_;
  std::unique_ptr<WorkflowRegistry> workflows_;
  std::unordered_map<std::string, std::unique_ptr<Live>> live_;
  Timers timers_;
  uv_timer_t* timer_ = nullptr;
  uv_timer_t* drain_timer_ = nullptr;
  uv_timer_t* debounce_ = nullptr;
  uv_timer_t* retention_timer_ = nullptr;
  Journal::ExpiredScan retention_scan_;  // where the next retention pass goes on
  uint64_t retention_tick_ms_ = 0;       // between passes once it has caught up
  uint64_t retention_deleted_ = 0;       // in the sweep under way
  uv_fs_event_t* watcher_ = nullptr;
  std::vector<uv_signal_t*> signals_;
  int lock_fd_ = -1;
  bool draining_ = false;
  bool journal_failed_ = false;
  std::string journal_error_;      // why, once it failed
  bool workers_detached_ = false;  // attempts outlived the grace period
  TimePoint drain_deadline_{};
  // The drain's grace period passed and the attempts still running were told to stop: a failure
  // they return now comes from that, and is not journaled (they run again after a restart).
  bool drain_stopping_ = false;
  TimePoint started_at_ = now_ms();
  std::string secrets_dir_;
  uint64_t id_counter_ = std::random_device{}();
  std::set<std::pair<std::string, std::string>> logged_load_errors_;  // file, error
  std::map<std::string, std::string> file_versions_;  // as journaled: file -> version it serves
  std::map<std::string, WorkflowStats> stats_;
  std::unordered_map<uint64_t, Waiter> awaiting_durable_;
  uint64_t next_await_token_ = 0;
  uint64_t compensations_ = 0;
  uint64_t retries_ = 0;
  SystemClock clock_;
  std::unique_ptr<Scheduler> scheduler_;  // null until recovery is done
  std::optional<Timers::iterator> schedule_timer_;
  std::vector<Watch> watches_;
  uint64_t watches_dropped_ = 0;
};

template <class Handle>
void close_handle(Handle*& h) {
  if (!h) return;
  uv_close(reinterpret_cast<uv_handle_t*>(h),
           [](uv_handle_t* p) { delete reinterpret_cast<Handle*>(p); });
  h = nullptr;
}

// One sagad per state directory: an flock on sagad.lock, which holds the owner's pid so that a
// second sagad can say who has it. The lock goes with the process, even on kill -9.
Result<void> Daemon::lock_state_dir() {
  std::string path = (fs::path(config_.state_dir) / "sagad.lock").string();
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    return make_error(ErrorCode::unavailable, "cannot open " + path + ": " + std::strerror(errno) +
                                                  "; check the state directory's permissions");
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    char buf[32] = {};
    ssize_t n = ::pread(fd, buf, sizeof(buf) - 1, 0);
    ::close(fd);
    std::string pid = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "unknown";
    while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
    return make_error(ErrorCode::unavailable, "state directory " + config_.state_dir +
                                                  " is in use by another sagad (pid " + pid +
                                                  "); stop it or give this one another --state");
  }
  std::string pid = std::to_string(getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) < 0) {
    spdlog::warn("cannot write the pid into {}: {}", path, std::strerror(errno));
  }
  lock_fd_ = fd;  // held until the process exits
  return {};
}

Result<void> Daemon::open() {
  std::error_code ec;
  fs::create_directories(config_.state_dir, ec);
  if (ec) {
    return make_error(ErrorCode::unavailable,
                      "cannot create state directory " + config_.state_dir + ": " + ec.message());
  }
  if (auto locked = lock_state_dir(); !locked) return locked;
  // Before the journal and the work of recovery; the socket may be in the state directory.
  if (auto usable = ControlServer::check_path(config_.socket_path); !usable) return usable;
  auto journal = open_rocksdb_journal((fs::path(config_.state_dir) / "journal").string(),
                                      config_.durability, config_.min_free_mb << 20);
  if (!journal) return std::unexpected(journal.error());
  journal_ = std::move(*journal);
  secrets_dir_ = config_.secrets_dir;
  if (secrets_dir_.empty()) {
    if (const char* creds = std::getenv("CREDENTIALS_DIRECTORY")) secrets_dir_ = creds;
  }
  return {};
}

// Loads the plugin files not loaded yet; a reload adds new files and keeps loaded ones as they
// are (a library is never unloaded while attempts may hold its step types).
void Daemon::load_plugins() {
  size_t known = plugins_.plugins().size();
  for (const auto& dir : config_.plugin_dirs) {
    for (const auto& error : plugins_.load_directory(dir)) spdlog::error("{}", error.message);
  }
  for (size_t i = known; i < plugins_.plugins().size(); ++i) {
    const auto& p = plugins_.plugins()[i];
    spdlog::info("plugin {} {} from {}: {} step types", p.name, p.version, p.file,
                 p.step_types.size());
  }
}

void Daemon::reload_workflows(bool log_every_error) {
  std::map<std::string, std::string> before;  // name -> file
  for (const auto& def : workflows_->current()) before.emplace(def->name, def->file);
  auto fresh = workflows_->reload(config_.workflows_dir);
  for (const auto& def : fresh) {
    writer_->submit_definition(def->version, def->source);
    spdlog::info("workflow {} version {} loaded from {}", def->name, def->version, def->file);
  }
  for (const auto& [name, file] : before) {
    if (!workflows_->find(name)) {
      spdlog::info("workflow {} is no longer defined ({} is gone or names another workflow)", name,
                   file);
    }
  }
  // A file that stays broken is reported when it breaks, not again at every change to another
  // file. A message holds one line per problem: each is a log line of its own.
  std::set<std::pair<std::string, std::string>> current;
  for (const auto& e : workflows_->errors()) {
    auto key = std::make_pair(e.file, e.error);
    if (log_every_error || !logged_load_errors_.contains(key)) {
      std::string_view rest = e.error;
      for (size_t end; (end = rest.find('\n')) != std::string_view::npos;
           rest.remove_prefix(end + 1)) {
        spdlog::error("{}", rest.substr(0, end));
      }
      spdlog::error("{}", rest);
    }
    current.insert(std::move(key));
  }
  logged_load_errors_ = std::move(current);
  // What each file serves, for after a restart: a file that fails to load then keeps serving it.
  // A directory that could not be read says nothing about its files.
  if (!workflows_->scanned()) return sync_schedules();
  auto serving = workflows_->file_versions();
  for (const auto& [path, version] : serving) {
    if (auto was = file_versions_.find(path);
        was == file_versions_.end() || was->second != version) {
      writer_->submit_file_version(path, version);
    }
  }
  for (const auto& [path, version] : file_versions_) {
    if (!serving.contains(path)) writer_->submit_file_version(path, std::nullopt);
  }
  file_versions_ = std::move(serving);
  sync_schedules();
}

namespace {

// One instance being recovered: its journaled history, then its events, then its state.
struct Recovering {
  std::string id;
  std::vector<std::string> history;
  std::vector<Event> events;
  DefinitionPtr def;
  std::optional<Instance> inst;
  std::string error;  // set: it cannot resume
};

// Parses the history into events, or says why the instance cannot resume. Pure work: any thread.
void parse_history(Recovering& r) {
  r.events.reserve(r.history.size());
  try {
    for (const auto& text : r.history) r.events.push_back(event_from_json_text(text));
  } catch (const std::exception& e) {
    r.error = fmt::format("has an unreadable history ({}); left as it is", e.what());
  }
  if (r.error.empty() &&
      (r.events.empty() || r.events.front().type != EventType::instance_started)) {
    r.error = "has no instance_started event; left as it is";
  }
}

// Rebuilds the instance from its events (its definition found), then drops them. Any thread.
void replay_history(Recovering& r) {
  if (r.error.empty()) r.inst = replay(*r.def, r.id, r.events);
  r.events = {};
}

// Runs fn(i) for i in [0, n) on up to `threads` threads (this one included).
template <class Fn>
void parallel_for(size_t n, size_t threads, Fn fn) {
  threads = std::clamp<size_t>(threads, 1, std::max<size_t>(n, 1));
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i = next++; i < n; i = next++) fn(i);
  };
  std::vector<std::thread> helpers;
  for (size_t t = 1; t < threads; ++t) helpers.emplace_back(work);
  work();
  for (auto& h : helpers) h.join();
}

}  // namespace

void Daemon::recover_instances() {
  auto started = std::chrono::steady_clock::now();
  size_t resumed = 0;
  // Histories are read here in chunks, which bound the memory recovery takes. Parsing and
  // replaying are pure work, done on a helper thread while this one reads the next chunk and
  // adopts the instances rebuilt before: a chunk is read, then parsed, then given its definitions
  // here (the registry is the loop's), then replayed, then adopted. Each thread frees what it
  // allocated (histories here, events there), so that neither waits on the other's malloc arena.
  constexpr size_t kChunk = 4096;
  std::vector<Recovering> reading, parsing, replaying, adopting;
  reading.reserve(kChunk);
  std::jthread helper;
  DefinitionPtr def;
  // The history alone rebuilds an instance; its first event names the version it is pinned to.
  auto find_definitions = [&](std::vector<Recovering>& chunk) {
    for (Recovering& r : chunk) {
      r.history = {};
      if (!r.error.empty()) continue;
      const std::string& version = r.events.front().version;
      if (!def || def->version != version) def = workflows_->find_version(version);
      if (!def) {
        std::string why = ", which is not in the journal";
        auto source = journal_->load_definition(version);
        if (source && *source) {
          def = workflows_->adopt(**source, version);
          if (!def) why = ", which does not load: " + workflows_->adopt_error();
        }
        if (!def) r.error = "is pinned to workflow version " + version + why + "; it cannot resume";
      }
      r.def = def;
    }
  };
  auto adopt = [&](std::vector<Recovering>& chunk) {
    for (Recovering& r : chunk) {
      if (!r.error.empty()) {
        spdlog::error("recovery: instance {} {}", r.id, r.error);
        continue;
      }
      Live& ref = add_live(r.id, r.def);
      ref.inst = std::move(*r.inst);
      // The journal wrote the record at each change of state, the last of which the history
      // replayed.
      ref.recorded = ref.inst.state;
      ref.created_durable = true;
      ref.durable_seq = ref.inst.seq;
      commit(ref, recover(*ref.def, ref.inst, now_ms()), false);
      ++resumed;
    }
    chunk.clear();
    notifier_->keepalive();
  };
  // `helper` touches only `parsing` and `replaying`, and only until it is joined.
  auto join_helper = [&] {
    if (helper.joinable()) helper.join();
  };
  auto scanned = journal_->scan_active_histories(
      [&](const std::string& id, std::vector<std::string>& history) {
        reading.push_back(Recovering{id, std::move(history), {}, nullptr, std::nullopt, {}});
        if (reading.size() < kChunk) return;
        join_helper();
        adopting.swap(replaying);
        find_definitions(parsing);
        replaying.swap(parsing);
        parsing.swap(reading);
        helper = std::jthread([&parsing, &replaying] {
          for (Recovering& r : replaying) replay_history(r);
          for (Recovering& r : parsing) parse_history(r);
        });
        adopt(adopting);
        reading.swap(adopting);  // empty, with its capacity
      });
  join_helper();
  if (!scanned) {
    spdlog::critical("recovery: {}", scanned.error().message);
    std::exit(1);
  }
  // What is left: one chunk rebuilt, one parsed, one only read.
  adopt(replaying);
  find_definitions(parsing);
  for (Recovering& r : parsing) replay_history(r);
  adopt(parsing);
  const size_t threads = std::clamp<size_t>(std::thread::hardware_concurrency(), 1, 8);
  parallel_for(reading.size(), threads, [&](size_t i) { parse_history(reading[i]); });
  find_definitions(reading);
  parallel_for(reading.size(), threads, [&](size_t i) { replay_history(reading[i]); });
  adopt(reading);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                  started)
                .count();
  spdlog::info("recovery: resumed {} instances in {} ms", resumed, ms);
}

Live& Daemon::add_live(const std::string& id, DefinitionPtr def) {
  auto& slot = live_[id];
  slot = std::make_unique<Live>();
  slot->def = std::move(def);
  return *slot;
}

Live* Daemon::find_live(const std::string& id) {
  auto it = live_.find(id);
  return it == live_.end() ? nullptr : it->second.get();
}

void Daemon::commit(Live& live, Transition&& t, bool created, std::function<void()> after) {
  if (t.events.empty()) {
    if (after) after();
    for (const auto& a : t.actions) perform(live, a);
    return;
  }
  InstanceWrite w;
  w.id = live.inst.id;
  w.workflow = live.inst.workflow;
  w.created_at = live.inst.created_at;
  w.created = created;
  w.events.reserve(t.events.size());
  for (const auto& e : t.events) {
    w.events.emplace_back(e.seq, event_json_text(e));
    if (e.type == EventType::compensation_succeeded) ++compensations_;
    if ((e.type == EventType::step_failed || e.type == EventType::compensation_failed) &&
        e.retry_at) {
      ++retries_;
    }
    if (e.type == EventType::instance_started) ++stats_[live.inst.workflow].started;
  }
  if (settled_now(t)) count_settled(live);
  // The record follows the instance's state; a settled one is also what waiters are answered with.
  // Until it settles, an instance is answered from memory (also after a restart, which replays
  // it): its record is a header, with the state that list filters on.
  const bool settled = is_settled(live.inst.state);
  if (created || settled || live.inst.state != live.recorded) {
    w.state =
        settled ? instance_json_text(*live.def, live.inst) : instance_header_json_text(live.inst);
    live.recorded = live.inst.state;
  }
  w.terminal = is_terminal(live.inst.state);
  // Watchers see the events once they are durable, as the journal got them: the writer hands
  // the write back, so that one who subscribed while it was in flight gets them too.
  writer_->submit(std::move(w), [this, actions = std::move(t.actions), settled,
                                 after = std::move(after)](InstanceWrite& written) {
    publish(written.id, written.workflow, written.events);
    if (after) after();
    on_durable(written.id, actions, settled, written.state,
               written.events.empty() ? 0 : written.events.back().first);
  });
}

void Daemon::on_durable(const std::string& id, const std::vector<Action>& actions, bool settled,
                        const std::string& state, uint64_t last_seq) {
  Live* live = find_live(id);
  if (!live) return;
  if (last_seq != 0) live->durable_seq = last_seq;
  if (!live->created_durable) {
    live->created_durable = true;
    for (uint64_t token : live->existing_acks) {
      if (auto w = take_awaiting(token)) {
        ControlServer::reply(w->conn, w->id, {{"id", id}, {"existing", true}});
      }
    }
    live->existing_acks.clear();
  }
  for (const auto& a : actions) perform(*live, a);
  if (!settled) return;
  if (!live->waiters.empty()) {
    // The instance as just journaled, spliced in as text: no parse and dump per waiter.
    const std::string rest = R"(,"id":)" + json(id).dump() + R"(,"instance":)" + state + "}";
    for (auto& w : live->waiters) {
      ControlServer::reply_text(
          w.conn, w.id, (w.existing ? R"({"existing":true)" : R"({"existing":false)") + rest);
    }
  }
  live->waiters.clear();
  if (is_terminal(live->inst.state) && live->running.empty()) {
    if (live->deadline) timers_.erase(*live->deadline);
    live_.erase(id);
    rearm_timer();
  }
}

void Daemon::perform(Live& live, const Action& a) {
  switch (a.kind) {
    case Action::Kind::run_attempt:
      dispatch(live, a.step, a.phase, a.attempt);
      break;
    case Action::Kind::arm_timer:
      add_timer(a.at, {live.inst.id, TimerKind::retry, a.step, a.phase, a.attempt});
      break;
    case Action::Kind::arm_deadline:
      if (live.deadline) timers_.erase(*live.deadline);
      live.deadline = add_timer(a.at, {live.inst.id, TimerKind::deadline, 0, Phase::run, 0});
      break;
    case Action::Kind::stop_attempts:
      for (auto& r : live.running) {
        r.cancel->store(true);
        // One still waiting for a worker never runs: it ends now, not a grace period later.
        if (r.ticket != 0 && executor_->drop_queued(r.ticket)) {
          loop_queue_->post([this, id = live.inst.id,
                             res = AttemptResult{r.step, r.phase, r.attempt, Outcome::retry,
                                                 nullptr, "cancelled before a worker took it up"}] {
            on_attempt_done(id, res);
          });
        }
      }
      if (!live.running.empty()) {
        add_timer(now_ms() + config_.grace,
                  {live.inst.id, TimerKind::stop_grace, 0, Phase::run, 0});
      }
      break;
  }
}

void Daemon::dispatch(Live& live, uint32_t step, Phase phase, uint32_t attempt) {
  // While draining, attempts that the journal says started are left for the restart to re-run.
  if (draining_) return;
  const Definition& def = *live.def;
  const StepDef& sd = def.steps[step];
  const Invocation& inv = phase == Phase::run ? sd.run : *sd.compensate;
  const std::string& id = live.inst.id;
  auto fail_now = [&](std::string error) {
    loop_queue_->post([this, id,
                       r = AttemptResult{step, phase, attempt, Outcome::fail, nullptr,
                                         std::move(error)}] { on_attempt_done(id, r); });
  };
  const StepTypeInfo* type = plugins_.find(inv.uses);
  if (!type) {
    fail_now("step type " + inv.uses + " is not loaded; add the plugin that provides it to a " +
             "--plugins directory");
    return;
  }
  // What the steps before returned, as the step's SAGA steps JSON; as a tree too only when the
  // step's `with` has something to render (most noop and exec steps have nothing).
  const bool templated = !inv.with.is_null() && !(inv.with.is_object() && inv.with.empty());
  json steps = templated ? json::object() : json();
  std::string steps_json;
  {
    JsonText text(steps_json);
    text.begin_object();
    for (uint32_t i = 0; i < live.inst.steps.size(); ++i) {
      const json& output = live.inst.steps[i].output;
      if (output.is_null()) continue;
      text.member(def.steps[i].name).begin_object().key("output").value(output).end_object();
      if (templated) steps[def.steps[i].name] = {{"output", output}};
    }
    text.end_object();
  }
  std::string params_json;
  std::shared_ptr<std::vector<std::string>> secrets_used;
  if (!templated && type->has_defaults) {
    // The step gets the declared default of what its `with:` leaves out.
    json params = inv.with;
    fill_param_defaults(*type, params);
    JsonText(params_json).value(params);
  } else if (!templated) {
    JsonText(params_json).value(inv.with);
  } else {
    TemplateScope scope;
    scope.input = &live.inst.input;
    scope.steps = &steps;
    scope.instance_id = id;
    scope.workflow = def.name;
    // A fire's id carries its time (DESIGN §3 schedules); only a workflow with that schedule has
    // it.
    if (auto fire = parse_fire_id(id);
        fire && fire->workflow == def.name && fire->index < def.schedules.size()) {
      scope.schedule_fire_time =
          date::format("%FT%TZ", std::chrono::floor<std::chrono::seconds>(fire->fire));
    }
    secrets_used = std::make_shared<std::vector<std::string>>();
    scope.secret = [this, secrets_used](const std::string& name) {
      auto value = read_secret(secrets_dir_, name);
      if (value && !value->empty()) secrets_used->push_back(*value);
      return value;
    };
    auto rendered = render_templates(inv.with, scope);
    if (!rendered) {
      fail_now(rendered.error().message);
      return;
    }
    // The loader checked the literal parameters; one that a template made is checked now, so
    // that the step type gets what it declared.
    for (const auto& param : type->params) {
      auto it = rendered->value.find(param.name);
      if (it == rendered->value.end()) continue;
      if (it->is_null() && param.required) {  // null counts as not given
        fail_now("parameter \"" + param.name + "\" of step " + sd.name + " (" + inv.uses +
                 ") is required, but its template rendered null");
        return;
      }
      if (auto why = param_type_mismatch(param_type_name(param.type), *it, /*rendered=*/true)) {
        // The value is quoted unless a secret went into it: the error is journaled and logged.
        std::string got;
        if (secrets_used->empty()) {
          got = it->dump(-1, ' ', false, json::error_handler_t::replace);
          if (got.size() > 40) got = got.substr(0, 37) + "...";
        } else {
          got = it->is_string()    ? "a string (from a secret)"
                : it->is_number()  ? "a number (from a secret)"
                : it->is_boolean() ? "true or false (from a secret)"
                : it->is_array()   ? "a list (from a secret)"
                : it->is_object()  ? "a mapping (from a secret)"
                                   : "null (from a secret)";
        }
        fail_now("parameter \"" + param.name + "\" of step " + sd.name + " (" + inv.uses +
                 ") must be " + *why + ", but its template rendered " + got);
        return;
      }
    }
    // A parameter whose template rendered null counts as not given: its default applies.
    fill_param_defaults(*type, rendered->value);
    try {
      params_json = rendered->value.dump();
    } catch (const json::type_error&) {
      // The workflow file is UTF-8 (the loader checks), so this came in through a secret.
      fail_now("the parameters of step " + sd.name +
               " are not UTF-8 text once rendered: a secret they use holds other bytes; store it "
               "as UTF-8 text");
      return;
    }
  }
  auto request = std::make_shared<AttemptRequest>();
  request->instance_id = id;
  request->workflow = def.name;
  request->step = sd.name;
  request->idempotency_key = id + "/" + sd.name;
  request->attempt = attempt;
  request->phase = phase == Phase::run ? SAGA_PHASE_RUN : SAGA_PHASE_COMPENSATE;
  request->params_json = std::move(params_json);
  JsonText(request->input_json).value(live.inst.input);
  request->steps_json = std::move(steps_json);

  RunningAttempt running{step, phase, attempt, std::make_shared<std::atomic<bool>>(false), {}, {}};
  std::optional<Millis> timeout = sd.timeout;
  if (timeout) {
    // Checked when it would expire had the attempt begun at once (see attempt_timeout).
    running.began_ms = std::make_shared<std::atomic<int64_t>>(0);
    running.timeout =
        add_timer(now_ms() + *timeout, {id, TimerKind::attempt_timeout, step, phase, attempt});
  }
  auto cancel = running.cancel;
  auto began_ms = running.began_ms;
  live.running.push_back(std::move(running));
  auto job = [this, type, request, cancel, began_ms, timeout, id, step, phase, attempt,
              secrets_used]() {
    if (began_ms) {
      const int64_t now = to_unix_ms(now_ms());
      began_ms->store(now);
      request->deadline_unix_ms = now + timeout->count();
    }
    AttemptReply reply = PluginRegistry::invoke(
        *type, *request, *cancel,
        [&id, &request, &secrets_used](uint32_t level, std::string_view message) {
          auto lvl = level >= SAGA_LOG_ERROR  ? spdlog::level::err
                     : level == SAGA_LOG_WARN ? spdlog::level::warn
                     : level == SAGA_LOG_INFO ? spdlog::level::info
                                              : spdlog::level::debug;
          if ((secrets_used && !secrets_used->empty()) || message.size() > kMaxErrorBytes) {
            // Masked before it is cut, so that no part of a secret is left at the cut.
            std::string text(message);
            if (secrets_used) mask_secrets(text, *secrets_used);
            spdlog::log(lvl, "{} {}: {}", id, request->step, cut_long(std::move(text), "log line"));
          } else {
            spdlog::log(lvl, "{} {}: {}", id, request->step, message);
          }
        });
    // What a step returns or logs may echo a secret it was given: it is masked before the
    // journal or the log can see it.
    if (secrets_used) mask_secrets(reply.data, *secrets_used);
    return std::function<void()>([this, id, step, phase, attempt, reply = std::move(reply)] {
      AttemptResult r{step, phase, attempt, Outcome::retry, nullptr, {}};
      switch (reply.outcome) {
        case SAGA_OUTCOME_OK: {
          r.outcome = Outcome::ok;
          // Most steps return nothing, which the SDK sends as {}: no parse for that.
          if (reply.data == "{}") {
            r.output = json::object();
          } else if (reply.data.size() > kMaxOutputBytes && phase == Phase::run) {
            // It would go to the journal, and to every client that lists the instance (a
            // compensation's output is not kept).
            r.outcome = Outcome::fail;
            r.error = fmt::format(
                "the step type returned an output of {:.1f} MiB, more than the {} MiB a step "
                "output may hold; keep large data elsewhere and return a reference to it",
                static_cast<double>(reply.data.size()) / (1 << 20), kMaxOutputBytes >> 20);
            break;
          } else if (json_nests_deeper_than(reply.data)) {
            r.outcome = Outcome::retry;
            r.error = "the step type returned an output that nests more than " +
                      std::to_string(kMaxJsonDepth) + " levels deep";
            break;
          } else {
            r.output = json::parse(reply.data, nullptr, false);
          }
          if (r.output.is_discarded()) {
            r.outcome = Outcome::retry;
            r.output = nullptr;
            r.error = "the step type returned an output that is not JSON";
          }
          break;
        }
        case SAGA_OUTCOME_FAIL:
          r.outcome = Outcome::fail;
          r.error = step_error(reply.data);
          break;
        default:
          r.error = step_error(reply.data);
          break;
      }
      on_attempt_done(id, r);
    });
  };
  if (type->runs_inline) {
    // A step that never blocks runs here, on the loop thread, saving two thread hand-offs; its
    // result is handled in order with everything else, after what is running now.
    loop_queue_->post(job());
  } else {
    live.running.back().ticket = executor_->submit(std::move(job));
  }
}

bool Daemon::abandon(const std::string& id, const RunningAttempt& a) {
  if (a.ticket == 0) return true;
  const std::string& step = find_live(id)->def->steps[a.step].name;
  switch (executor_->abandon(a.ticket)) {
    case Executor::Abandoned::dropped:  // it never began
      return true;
    case Executor::Abandoned::done:  // it returned meanwhile: its result is on its way here
      return false;
    case Executor::Abandoned::replaced:
      spdlog::warn(
          "{} {} attempt {} ignores being told to stop; another worker takes its place ({} such "
          "attempts hold a worker each until they return)",
          id, step, a.attempt, executor_->abandoned());
      return true;
    case Executor::Abandoned::too_many:
      spdlog::error(
          "{} {} attempt {} ignores being told to stop, and no worker replaces it: {} such "
          "attempts hold workers already; fix the step type, then restart sagad",
          id, step, a.attempt, executor_->abandoned());
      return true;
  }
  return true;
}

void Daemon::on_attempt_done(const std::string& id, const AttemptResult& result) {
  Live* live = find_live(id);
  if (!live) return;
  bool timed_out = false;
  std::erase_if(live->running, [&](const RunningAttempt& a) {
    if (a.step != result.step || a.phase != result.phase || a.attempt != result.attempt) {
      return false;
    }
    timed_out = a.timed_out;
    if (a.timeout) timers_.erase(*a.timeout);
    return true;
  });
  AttemptResult timed_out_result;
  if (timed_out && result.outcome != Outcome::ok) {
    // However the attempt ended once told to stop (a transient "cancelled", or a signal of
    // exec's), it timed out: a transient failure.
    timed_out_result = {
        result.step,
        result.phase,
        result.attempt,
        Outcome::retry,
        nullptr,
        "attempt timed out after " + format_duration(*live->def->steps[result.step].timeout)};
  }
  const AttemptResult& r = timed_out && result.outcome != Outcome::ok ? timed_out_result : result;
  if (is_terminal(live->inst.state) && live->running.empty()) {
    // A late result of an abandoned attempt: the instance has ended and can leave memory, once
    // its end is durable (else on_durable answers its waiters and lets it go).
    if (live->durable_seq == live->inst.seq) {
      if (live->deadline) timers_.erase(*live->deadline);
      live_.erase(id);
    }
    return;
  }
  // Told to stop by the drain: how it ended says nothing about the step (a program may well
  // exit 0 on SIGTERM without having done its work). It is journaled as still running, and
  // recovery runs it again.
  if (drain_stopping_) return;
  if (r.outcome != Outcome::ok) {
    spdlog::warn("{} {}{} attempt {}: {}", id, live->def->steps[r.step].name,
                 r.phase == Phase::compensate ? " (compensation)" : "", r.attempt, r.error);
  }
  if (journal_failed_) return;
  commit(*live, on_attempt_result(*live->def, live->inst, r, now_ms(), starts()), false);
}

uint64_t Daemon::await_durable(const ControlServer::Call& call) {
  uint64_t token = next_await_token_++;
  awaiting_durable_.emplace(token, Waiter{call.conn, call.id});
  return token;
}

std::optional<Waiter> Daemon::take_awaiting(uint64_t token) {
  auto it = awaiting_durable_.find(token);
  if (it == awaiting_durable_.end()) return std::nullopt;
  Waiter w = std::move(it->second);
  awaiting_durable_.erase(it);
  return w;
}

void Daemon::publish(const std::string& id, const std::string& workflow,
                     const std::vector<std::pair<uint64_t, std::string>>& events) {
  if (watches_.empty()) return;
  std::vector<json> parsed;  // once, and only when a watcher wants them
  std::erase_if(watches_, [&](Watch& w) {
    if (!ControlServer::backlog(w.conn)) return true;  // the client went away
    if ((w.instance && *w.instance != id) || (w.workflow && *w.workflow != workflow)) return false;
    if (parsed.empty()) {
      parsed.reserve(events.size());
      for (const auto& [seq, text] : events) parsed.push_back(json::parse(text));
    }
    for (const auto& e : parsed) {
      if (!send_event(w, id, workflow, e)) return true;
    }
    return false;
  });
}

// Sends one event unless the instance watch has had it already; false when the watcher is gone
// or had to be dropped.
bool Daemon::send_event(Watch& w, const std::string& id, const std::string& workflow,
                        const json& event) {
  uint64_t seq = event.value("seq", uint64_t{0});
  if (w.instance && seq <= w.last_seq) return true;
  auto backlog = ControlServer::backlog(w.conn);
  if (!backlog) return false;
  if (*backlog > kWatchBacklogBytes + w.replay_bytes) {
    drop_watch(w, fmt::format("the watcher fell behind: more than {} KiB of events unread",
                              (kWatchBacklogBytes + w.replay_bytes) / 1024));
    return false;
  }
  json params = event;
  params["id"] = id;
  params["workflow"] = workflow;
  w.last_seq = seq;
  return ControlServer::notify(w.conn, "event", std::move(params));
}

void Daemon::drop_watch(Watch& w, const std::string& why) {
  ++watches_dropped_;
  spdlog::warn("control: dropped a watcher: {}", why);
  ControlServer::notify(w.conn, "watch.dropped", {{"reason", why}});
  ControlServer::close_after_flush(w.conn, kWatchDropGraceMs);
}

void Daemon::on_journal_failure(const Error& error) {
  if (journal_failed_) return;
  journal_failed_ = true;
  journal_error_ = error.message;
  spdlog::critical(
      "journal write failed: {}. sagad accepts no new work and acts on nothing "
      "further; free the disk and restart it: every acknowledged instance resumes",
      error.message);
  const int code = rpc::error_code_for(ErrorCode::unavailable);
  for (auto& [token, w] : awaiting_durable_) {
    ControlServer::reply_error(w.conn, w.id, code,
                               "the journal is unavailable (a write failed: " + error.message +
                                   "); this request was not carried out");
  }
  awaiting_durable_.clear();
  for (auto& [id, live] : live_) {
    for (auto& w : live->waiters) {
      ControlServer::reply_error(
          w.conn, w.id, code,
          "the journal is unavailable (a write failed); instance " + id +
              " is not carried on now: what of it was journaled resumes when sagad restarts");
    }
    live->waiters.clear();
  }
}

Timers::iterator Daemon::add_timer(TimePoint at, TimerEntry entry) {
  auto it = timers_.emplace(at, std::move(entry));
  if (it == timers_.begin()) rearm_timer();
  return it;
}

void Daemon::rearm_timer() {
  if (!timer_) return;
  if (timers_.empty()) {
    uv_timer_stop(timer_);
    return;
  }
  // Timers are due at wall-clock times, and libuv waits on the monotonic clock, which stands
  // still while the machine is suspended and ignores the clock being set: a long wait is taken
  // in steps, so that a due timer is noticed within one step of such a change.
  auto delay = std::min(timers_.begin()->first - now_ms(), kWallClockStep);
  uv_timer_start(
      timer_, [](uv_timer_t* t) { static_cast<Daemon*>(t->data)->on_timer_fired(); },
      static_cast<uint64_t>(std::max<int64_t>(delay.count(), 0)), 0);
}

void Daemon::on_timer_fired() {
  TimePoint now = now_ms();
  while (!timers_.empty() && timers_.begin()->first <= now) {
    TimerEntry entry = std::move(timers_.begin()->second);
    timers_.erase(timers_.begin());
    handle_timer(entry, now);
  }
  rearm_timer();
}

void Daemon::handle_timer(const TimerEntry& e, TimePoint now) {
  if (e.kind == TimerKind::schedule) {
    schedule_timer_.reset();
    return on_schedules_due();
  }
  Live* live = find_live(e.id);
  if (!live || journal_failed_) return;
  switch (e.kind) {
    case TimerKind::retry:
      commit(*live, on_timer(*live->def, live->inst, e.step, e.phase, now, starts()), false);
      break;
    case TimerKind::deadline:
      live->deadline.reset();
      commit(*live, on_deadline(*live->def, live->inst, now, starts()), false);
      break;
    case TimerKind::attempt_timeout: {
      auto it = std::find_if(live->running.begin(), live->running.end(), [&](const auto& a) {
        return a.step == e.step && a.phase == e.phase && a.attempt == e.attempt;
      });
      if (it == live->running.end()) break;
      const Millis timeout = *live->def->steps[e.step].timeout;
      if (it->timed_out) {
        // Told to stop a grace period ago and running still: abandoned, so that the step goes
        // on; what it returns later is ignored.
        it->timeout.reset();  // this timer, which has fired
        if (!abandon(e.id, *it)) break;
        it->timed_out = false;
        on_attempt_done(e.id, {e.step, e.phase, e.attempt, Outcome::retry, nullptr,
                               "attempt timed out after " + format_duration(timeout) +
                                   " and did not stop within " + format_duration(config_.grace) +
                                   "; abandoned"});
        break;
      }
      // The attempt waited for a worker: its time counts from when one took it up.
      const int64_t began = it->began_ms ? it->began_ms->load() : 0;
      const TimePoint due = began == 0 ? now + timeout : from_unix_ms(began) + timeout;
      if (due > now) {
        it->timeout =
            add_timer(due, {e.id, TimerKind::attempt_timeout, e.step, e.phase, e.attempt});
        break;
      }
      // The next attempt waits for this one to stop (on_attempt_done), so that two attempts of
      // a step do not run at once, unless this one ignores being told for the grace period.
      it->cancel->store(true);
      it->timed_out = true;
      it->timeout = add_timer(now + config_.grace,
                              {e.id, TimerKind::attempt_timeout, e.step, e.phase, e.attempt});
      break;
    }
    case TimerKind::schedule:
      break;
    case TimerKind::stop_grace: {
      // Only the attempts that were told to stop: a compensation that started since runs on.
      auto running = live->running;
      for (const auto& a : running) {
        // One that timed out meanwhile has a grace period of its own (attempt_timeout).
        if (!a.cancel->load() || a.timed_out) continue;
        if (!abandon(e.id, a)) continue;
        on_attempt_done(e.id, {a.step, a.phase, a.attempt, Outcome::fail, nullptr,
                               "abandoned: the attempt did not stop within " +
                                   format_duration(config_.grace) + " of the cancel"});
      }
      break;
    }
  }
}

std::string Daemon::new_instance_id(TimePoint created_at) {
  // Time-ordered: the milliseconds in 9 base-32 digits (until the year 3084), then 6 of a
  // per-process counter that starts at random. Digits before letters, so that the text sorts as
  // the numbers do; 15 characters, which std::string keeps without allocating, and an id is
  // copied many times per step.
  static constexpr std::string_view kDigits = "0123456789abcdefghijklmnopqrstuv";
  std::string id(15, '0');
  auto ms = static_cast<uint64_t>(to_unix_ms(created_at));
  for (size_t i = 9; i-- > 0; ms >>= 5) id[i] = kDigits[ms & 31];
  uint64_t n = id_counter_++;
  for (size_t i = 15; i-- > 9; n >>= 5) id[i] = kDigits[n & 31];
  return id;
}

Result<json> Daemon::stored_instance(const std::string& id, bool history) {
  json instance;
  if (Live* live = find_live(id)) {
    instance = instance_to_json(*live->def, live->inst);
  } else {
    auto state = journal_->load_state(id);
    if (!state) return std::unexpected(state.error());
    if (!*state) return make_error(ErrorCode::not_found, "no instance " + id);
    instance = json::parse(**state);
  }
  if (history) {
    auto events = journal_->load_history(id);
    if (!events) return std::unexpected(events.error());
    json list = json::array();
    for (const auto& text : *events) list.push_back(json::parse(text));
    instance["history"] = std::move(list);
  }
  return instance;
}

void reply_error(const ControlServer::Call& call, const Error& error) {
  ControlServer::reply_error(call.conn, call.id, rpc::error_code_for(error.code), error.message);
}

void reply_invalid(const ControlServer::Call& call, const std::string& message) {
  ControlServer::reply_error(call.conn, call.id, rpc::kInvalidParams, message);
}

std::optional<std::string> string_param(const json& params, const char* key) {
  auto it = params.find(key);
  if (it == params.end() || it->is_null()) return std::nullopt;
  if (!it->is_string()) return std::string("\x01");
  return it->get<std::string>();
}

// A boolean parameter: `fallback` when absent or null, nullopt when it is not a boolean.
std::optional<bool> bool_param(const json& params, const char* key, bool fallback) {
  auto it = params.find(key);
  if (it == params.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) return std::nullopt;
  return it->get<bool>();
}

void Daemon::handle_start(ControlServer::Call& call) {
  const json& p = call.params;
  auto workflow = string_param(p, "workflow");
  if (!workflow || *workflow == "\x01")
    return reply_invalid(call, "start needs \"workflow\", a string");
  auto id = string_param(p, "id");
  if (id && (*id == "\x01" || id->empty() || id->size() > rpc::kMaxIdBytes)) {
    return reply_invalid(call, "\"id\" must be a non-empty string of at most 128 bytes");
  }
  if (id && rpc::has_control_character(*id)) {
    return reply_invalid(call, "\"id\" must not contain control characters (NUL, newline, tab)");
  }
  // The input goes on into the instance: taken out of the request, not copied.
  json input = json::object();
  if (auto it = call.params.find("input"); it != call.params.end()) input = std::move(*it);
  if (!input.is_object()) return reply_invalid(call, "\"input\" must be a JSON object");
  auto waits = bool_param(p, "wait", false);
  if (!waits) return reply_invalid(call, "\"wait\" must be true or false");
  const bool wait = *waits;

  if (id) {
    // Starting an id again answers with the instance it names, if it runs the same workflow.
    auto other_workflow = [&](const std::string& runs) {
      reply_error(call, {ErrorCode::already_exists,
                         "instance " + *id + " exists and runs workflow " + runs + ", not " +
                             *workflow + "; start it under another id"});
    };
    if (Live* live = find_live(*id)) {
      if (live->def->name != *workflow) return other_workflow(live->def->name);
      // Answered once it has settled in the journal, not only in memory.
      if (wait && !(is_settled(live->inst.state) && live->durable_seq == live->inst.seq)) {
        live->waiters.push_back({call.conn, call.id, /*existing=*/true});
        return;
      }
      if (!live->created_durable) {
        live->existing_acks.push_back(await_durable(call));
        return;
      }
      json result = {{"id", *id}, {"existing", true}};
      if (wait) result["instance"] = instance_to_json(*live->def, live->inst);
      return ControlServer::reply(call.conn, call.id, std::move(result));
    }
    auto stored = journal_->load_state(*id);
    if (!stored) return reply_error(call, stored.error());
    if (*stored) {
      json instance = json::parse(**stored, nullptr, false);
      if (instance.is_object() && instance.contains("workflow") &&
          instance["workflow"] != *workflow) {
        return other_workflow(instance["workflow"].is_string()
                                  ? instance["workflow"].get<std::string>()
                                  : instance["workflow"].dump());
      }
      json result = {{"id", *id}, {"existing", true}};
      if (wait) result["instance"] = std::move(instance);
      return ControlServer::reply(call.conn, call.id, std::move(result));
    }
  }
  DefinitionPtr def = workflows_->find(*workflow);
  if (!def) {
    return reply_error(call, {ErrorCode::not_found,
                              "no workflow " + *workflow + " (sagactl workflows lists them)"});
  }
  if (auto missing = missing_input(*def, input)) return reply_invalid(call, *missing);
  const TimePoint now = now_ms();
  std::string instance_id = id ? *id : new_instance_id(now);
  Live& live = add_live(instance_id, def);
  if (wait) live.waiters.push_back({call.conn, call.id});
  Transition t = start(*def, live.inst, instance_id, std::move(input),
                       Caller{call.peer.uid, call.peer.gid}, now);
  std::optional<uint64_t> token;
  if (!wait) token = await_durable(call);
  commit(live, std::move(t), true, [this, token, instance_id] {
    if (!token) return;
    if (auto w = take_awaiting(*token)) {
      ControlServer::reply(w->conn, w->id, {{"id", instance_id}, {"existing", false}});
    }
  });
}

void Daemon::handle_inspect(ControlServer::Call& call) {
  auto id = string_param(call.params, "id");
  if (!id || *id == "\x01") return reply_invalid(call, "inspect needs \"id\", a string");
  auto history = bool_param(call.params, "history", false);
  if (!history) return reply_invalid(call, "\"history\" must be true or false");
  auto instance = stored_instance(*id, *history);
  if (!instance) return reply_error(call, instance.error());
  ControlServer::reply(call.conn, call.id, std::move(*instance));
}

void Daemon::handle_list(ControlServer::Call& call) {
  ListFilter filter;
  const json& p = call.params;
  auto state = string_param(p, "state");
  auto workflow = string_param(p, "workflow");
  auto cursor = string_param(p, "cursor");
  if (state == "\x01" || workflow == "\x01" || cursor == "\x01") {
    return reply_invalid(call, "\"state\", \"workflow\" and \"cursor\" must be strings");
  }
  if (state && !parse_instance_state(*state)) {
    return reply_invalid(call, "unknown state " + *state +
                                   "; use running, completed, compensating, compensated, failed "
                                   "or compensation_failed");
  }
  filter.state = state;
  filter.workflow = workflow;
  filter.cursor = cursor;
  if (auto it = p.find("limit"); it != p.end()) {
    if (!it->is_number_integer() || it->get<int64_t>() < 1 || it->get<int64_t>() > 1000) {
      return reply_invalid(call, "\"limit\" must be an integer from 1 to 1000");
    }
    filter.limit = it->get<uint32_t>();
  }
  auto page = journal_->list(filter);
  if (!page) return reply_error(call, page.error());
  // The journal's record has the state and the workflow the filters need; an instance still
  // live is shown as it is now (its record is a header until it settles), unless its record is a
  // settled one of another state: a change of state is on its way to the journal, and the record
  // is what was matched.
  json instances = json::array();
  for (const auto& text : page->states) {
    json record = json::parse(text);
    Live* live = find_live(record.value("id", ""));
    if (live && (is_instance_header(record) ||
                 parse_instance_state(record.value("state", "")) == live->inst.state)) {
      record = instance_to_json(*live->def, live->inst);
    }
    instances.push_back(std::move(record));
  }
  ControlServer::reply(call.conn, call.id,
                       {{"instances", std::move(instances)},
                        {"next_cursor", page->next_cursor ? json(*page->next_cursor) : json()}});
}

void Daemon::handle_retry_or_cancel(ControlServer::Call& call, bool is_retry) {
  const json& p = call.params;
  auto id = string_param(p, "id");
  if (!id || *id == "\x01") return reply_invalid(call, "needs \"id\", a string");
  Live* live = find_live(*id);
  if (!live) {
    auto stored = journal_->load_state(*id);
    if (!stored) return reply_error(call, stored.error());
    if (!*stored) return reply_error(call, {ErrorCode::not_found, "no instance " + *id});
    json state = json::parse(**stored);
    return reply_error(call, {ErrorCode::failed_precondition,
                              "instance " + *id + " is " + state.value("state", "") + "; " +
                                  (is_retry ? "retry applies to failed or compensation_failed "
                                              "instances"
                                            : "cancel applies to running or failed instances")});
  }
  Result<Transition> t = make_error(ErrorCode::internal, "");
  if (is_retry) {
    auto from = string_param(p, "from");
    if (from == "\x01") return reply_invalid(call, "\"from\" must be a step name");
    json input = p.value("input", json());
    // New input replaces the instance's, as at start: it must hold the required keys. The
    // engine names the state of an instance that takes none, and refuses input that is not an
    // object.
    if (input.is_object() && (live->inst.state == InstanceState::failed ||
                              live->inst.state == InstanceState::compensation_failed)) {
      if (auto missing = missing_input(*live->def, input)) return reply_invalid(call, *missing);
    }
    t = retry(*live->def, live->inst, from, std::move(input), Caller{call.peer.uid, call.peer.gid},
              now_ms());
  } else {
    auto reason = string_param(p, "reason");
    if (reason == "\x01") return reply_invalid(call, "\"reason\" must be a string");
    t = cancel(*live->def, live->inst, reason.value_or(""), Caller{call.peer.uid, call.peer.gid},
               now_ms());
  }
  if (!t) return reply_error(call, t.error());
  json instance = instance_to_json(*live->def, live->inst);
  commit(*live, std::move(*t), false,
         [this, token = await_durable(call), instance = std::move(instance)] {
           if (auto w = take_awaiting(token)) ControlServer::reply(w->conn, w->id, instance);
         });
}

void Daemon::handle_watch(ControlServer::Call& call) {
  auto id = string_param(call.params, "id");
  auto workflow = string_param(call.params, "workflow");
  if (id == "\x01" || workflow == "\x01") {
    return reply_invalid(call, "\"id\" and \"workflow\" must be strings");
  }
  Watch w{call.conn, id, workflow, 0};
  std::vector<json> history;
  std::string instance_workflow;
  if (id) {
    if (Live* live = find_live(*id)) {
      instance_workflow = live->inst.workflow;
    } else {
      auto stored = journal_->load_state(*id);
      if (!stored) return reply_error(call, stored.error());
      if (!*stored) return reply_error(call, {ErrorCode::not_found, "no instance " + *id});
      instance_workflow = json::parse(**stored).value("workflow", "");
    }
    if (workflow && *workflow != instance_workflow) {
      return reply_invalid(call, "instance " + *id + " belongs to workflow " + instance_workflow);
    }
    // What is journaled already; whatever becomes durable after this comes through publish(),
    // and last_seq drops what both would send.
    auto events = journal_->load_history(*id);
    if (!events) return reply_error(call, events.error());
    history.reserve(events->size());
    for (const auto& text : *events) history.push_back(json::parse(text));
  }
  json watching = json::object();
  if (id) watching["id"] = *id;
  if (workflow) watching["workflow"] = *workflow;
  json result = {{"watching", watching}};
  // The seq of the last event already journaled: a client that waits for the instance to settle
  // ignores settling events before it (an instance that failed and was retried since).
  if (id) {
    uint64_t last_seq = 0;
    if (!history.empty()) last_seq = history.back().value("seq", uint64_t{0});
    result["last_seq"] = last_seq;
  }
  ControlServer::reply(call.conn, call.id, std::move(result));
  // The history goes at once, up to kMaxReplayBytes: the bound applies to what comes after it.
  w.replay_bytes = kMaxReplayBytes - kWatchBacklogBytes;
  for (const auto& event : history) {
    if (!send_event(w, *id, instance_workflow, event)) return;
  }
  w.replay_bytes = ControlServer::backlog(w.conn).value_or(0);
  // Gone connections go; so does this connection's earlier watch, which this one replaces (its
  // notifications could not be told apart).
  std::erase_if(watches_, [&](const Watch& x) {
    return !ControlServer::backlog(x.conn) ||
           (!x.conn.owner_before(w.conn) && !w.conn.owner_before(x.conn));
  });
  watches_.push_back(std::move(w));
}

void Daemon::count_settled(const Live& live) {
  WorkflowStats& ws = stats_[live.inst.workflow];
  switch (live.inst.state) {
    case InstanceState::completed:
      ++ws.completed;
      break;
    case InstanceState::compensated:
      ++ws.compensated;
      break;
    case InstanceState::compensation_failed:
      ++ws.compensation_failed;
      break;
    default:
      ++ws.failed;
      break;
  }
  int64_t ms = std::max<int64_t>((live.inst.updated_at - live.inst.created_at).count(), 0);
  if (ws.durations_ms.size() < kDurationSamples) {
    ws.durations_ms.push_back(ms);
  } else {
    ws.durations_ms[ws.settled % kDurationSamples] = ms;
  }
  ++ws.settled;
  ws.duration_sum_ms += static_cast<uint64_t>(ms);
}

json Daemon::journal_health() const {
  return {{"ok", !journal_failed_}, {"error", journal_failed_ ? json(journal_error_) : json()}};
}

json Daemon::stats_json() const {
  const json health = journal_health();
  json by_state = json::object();
  for (auto state : {InstanceState::running, InstanceState::compensating, InstanceState::failed,
                     InstanceState::compensation_failed}) {
    by_state[std::string(to_string(state))] = 0;
  }
  for (const auto& [id, live] : live_) {
    if (!is_terminal(live->inst.state)) {
      auto& count = by_state[std::string(to_string(live->inst.state))];
      count = count.get<int64_t>() + 1;
    }
  }
  uint64_t completed = 0, compensated = 0;
  json workflows = json::array();
  for (const auto& [name, ws] : stats_) {
    completed += ws.completed;
    compensated += ws.compensated;
    std::vector<double> d(ws.durations_ms.begin(), ws.durations_ms.end());
    workflows.push_back({{"name", name},
                         {"started", ws.started},
                         {"completed", ws.completed},
                         {"compensated", ws.compensated},
                         {"failed", ws.failed},
                         {"compensation_failed", ws.compensation_failed},
                         // null until an instance settles: 0% would say that every one failed.
                         {"success_rate", ws.settled ? json(static_cast<double>(ws.completed) /
                                                            static_cast<double>(ws.settled))
                                                     : json()},
                         {"duration_ms",
                          {{"p50", percentile(d, 50)},
                           {"p90", percentile(d, 90)},
                           {"p99", percentile(d, 99)},
                           {"count", ws.settled},
                           {"sum", ws.duration_sum_ms},
                           {"samples", d.size()}}}});
  }
  by_state["completed"] = completed;
  by_state["compensated"] = compensated;
  CommitStats cs = writer_->stats();
  std::vector<double> commit_ms;
  commit_ms.reserve(cs.recent_us.size());
  for (uint32_t us : cs.recent_us) commit_ms.push_back(us / 1000.0);
  return {
      {"instances", by_state},
      {"workflows", workflows},
      {"compensations", compensations_},
      {"retries", retries_},
      {"journal",
       {{"ok", health["ok"]},
        {"error", health["error"]},
        {"commits", cs.commits},
        {"writes", cs.writes},
        {"avg_batch",
         cs.commits ? static_cast<double>(cs.writes) / static_cast<double>(cs.commits) : 0.0},
        {"commit_ms",
         {{"p50", percentile(commit_ms, 50)},
          {"p90", percentile(commit_ms, 90)},
          {"p99", percentile(commit_ms, 99)},
          {"sum", static_cast<double>(cs.total_us) / 1000.0}}}}},
      {"watchers",
       {{"active", std::count_if(watches_.begin(), watches_.end(),
                                 [](const Watch& w) { return ControlServer::backlog(w.conn); })},
        {"dropped", watches_dropped_}}},
      {"uptime_s",
       std::chrono::duration_cast<std::chrono::seconds>(now_ms() - started_at_).count()}};
}

json Daemon::workflows_json() const {
  json list = json::array();
  for (const auto& def : workflows_->current()) {
    json steps = json::array();
    for (const auto& s : def->steps) steps.push_back(s.name);
    list.push_back({{"name", def->name},
                    {"version", def->version},
                    {"file", def->file},
                    {"description", def->description},
                    {"steps", steps}});
  }
  json errors = json::array();
  for (const auto& e : workflows_->errors())
    errors.push_back({{"file", e.file}, {"error", e.error}});
  return {{"workflows", std::move(list)}, {"errors", std::move(errors)}};
}

json Daemon::plugins_json() const {
  json list = json::array();
  for (const auto& p : plugins_.plugins()) {
    json types = json::array();
    for (const auto& name : p.step_types) {
      const StepTypeInfo* info = plugins_.find(name);
      json params = json::array();
      if (info) {
        for (const auto& param : info->params) {
          params.push_back({{"name", param.name},
                            {"type", param_type_name(param.type)},
                            {"required", param.required},
                            {"default", param.default_value},
                            {"description", param.description}});
        }
      }
      types.push_back({{"name", name},
                       {"description", info ? info->description : ""},
                       {"compensates", info && info->can_compensate},
                       {"inline", info && info->runs_inline},
                       {"accepts_any_params", info && info->accepts_any_params},
                       {"params", std::move(params)}});
    }
    list.push_back({{"name", p.name},
                    {"version", p.version},
                    {"file", p.file},
                    {"abi", fmt::format("{}.{}", p.abi_major, p.abi_minor)},
                    {"step_types", std::move(types)}});
  }
  json errors = json::array();
  for (const auto& e : plugins_.errors()) errors.push_back({{"file", e.file}, {"error", e.error}});
  return {{"plugins", std::move(list)}, {"errors", std::move(errors)}};
}

void Daemon::on_call(ControlServer::Call call) {
  const std::string& m = call.method;
  if (m == "ping") {
    auto uptime = std::chrono::duration_cast<std::chrono::seconds>(now_ms() - started_at_).count();
    return ControlServer::reply(call.conn, call.id,
                                {{"version", SAGA_VERSION},
                                 {"uptime_s", uptime},
                                 // As sagad resolved it (it was given relative to its
                                 // working directory, say), for whoever looks from elsewhere.
                                 {"state_dir", fs::absolute(config_.state_dir).lexically_normal()},
                                 {"pid", static_cast<int64_t>(getpid())},
                                 {"journal", journal_health()}});
  }
  if (m == "inspect") return handle_inspect(call);
  if (m == "list") return handle_list(call);
  if (m == "workflows.list") return ControlServer::reply(call.conn, call.id, workflows_json());
  if (m == "workflows.show") {
    auto name = string_param(call.params, "name");
    if (!name || *name == "\x01") return reply_invalid(call, "workflows.show needs \"name\"");
    DefinitionPtr def = workflows_->find(*name);
    if (!def) return reply_error(call, {ErrorCode::not_found, "no workflow " + *name});
    json steps = json::array();
    for (const auto& s : def->steps) steps.push_back(s.name);
    return ControlServer::reply(call.conn, call.id,
                                {{"name", def->name},
                                 {"version", def->version},
                                 {"file", def->file},
                                 {"description", def->description},
                                 {"source", def->source},
                                 {"steps", steps}});
  }
  if (m == "plugins.list") return ControlServer::reply(call.conn, call.id, plugins_json());
  if (m == "stats") return ControlServer::reply(call.conn, call.id, stats_json());
  if (m.starts_with("schedules.")) return handle_schedules(call);
  if (m == "watch") return handle_watch(call);
  if (m == "start" || m == "retry" || m == "cancel") {
    if (journal_failed_) {
      return reply_error(call, {ErrorCode::unavailable,
                                "the journal is unavailable (a write failed); sagad accepts no "
                                "new work until it is restarted"});
    }
    if (draining_) {
      return reply_error(call, {ErrorCode::unavailable, "sagad is shutting down"});
    }
    if (m == "start") return handle_start(call);
    return handle_retry_or_cancel(call, m == "retry");
  }
  ControlServer::reply_error(call.conn, call.id, rpc::kMethodNotFound,
                             "unknown method " + m + "; sagactl --help lists the commands");
}

void Daemon::start_scheduler() {
  auto records = journal_->load_schedules();
  if (!records) {
    spdlog::critical("recovery: {}", records.error().message);
    std::exit(1);
  }
  ScheduleHost& host = *this;
  scheduler_ = std::make_unique<Scheduler>(clock_, host);
  scheduler_->restore(*records);
  sync_schedules();
}

void Daemon::sync_schedules() {
  if (!scheduler_ || journal_failed_) return;
  scheduler_->sync(workflows_->current(),
                   [this](std::string_view name) { return workflows_->may_define(name); });
  if (schedule_timer_) timers_.erase(*schedule_timer_);
  schedule_timer_.reset();
  arm_schedules();
  rearm_timer();
}

void Daemon::arm_schedules() {
  // The scheduler looks at the clock every step too, for a clock that was set back.
  if (auto next = scheduler_->next_wakeup()) {
    schedule_timer_ = add_timer(std::min(*next, now_ms() + kWallClockStep),
                                {"", TimerKind::schedule, 0, Phase::run, 0});
  }
}

void Daemon::on_schedules_due() {
  if (journal_failed_ || draining_) return;
  scheduler_->tick();
  arm_schedules();
}

ScheduleHost::FireStart Daemon::start_fire(const DefinitionPtr& def, const std::string& id,
                                           json input) {
  if (find_live(id)) return FireStart::exists;
  auto stored = journal_->load_state(id);
  if (!stored) {
    spdlog::error("schedule: cannot check for instance {}: {}", id, stored.error().message);
    return FireStart::failed;
  }
  if (*stored) return FireStart::exists;
  if (auto fire = parse_fire_id(id)) {
    TemplateScope scope;
    scope.instance_id = id;
    scope.workflow = def->name;
    scope.schedule_fire_time =
        date::format("%FT%TZ", std::chrono::floor<std::chrono::seconds>(fire->fire));
    auto rendered = render_templates(input, scope);
    if (!rendered) {  // the loader lets only these three through
      spdlog::error("schedule: the input of {} cannot be rendered: {}", id,
                    rendered.error().message);
      return FireStart::failed;
    }
    input = std::move(rendered->value);
  }
  Live& live = add_live(id, def);
  commit(live, start(*def, live.inst, id, std::move(input), std::nullopt, now_ms()), true);
  return FireStart::started;
}

bool Daemon::is_running(const std::string& id) const {
  auto it = live_.find(id);
  return it != live_.end() && !is_settled(it->second->inst.state);
}

void Daemon::persist(const std::string& key, std::optional<std::string> value,
                     std::function<void()> on_durable) {
  writer_->submit_schedule(key, std::move(value), std::move(on_durable));
}

void Daemon::handle_schedules(ControlServer::Call& call) {
  if (call.method == "schedules.list") {
    return ControlServer::reply(call.conn, call.id, scheduler_->list());
  }
  const bool pause = call.method == "schedules.pause";
  if (!pause && call.method != "schedules.resume") {
    return ControlServer::reply_error(call.conn, call.id, rpc::kMethodNotFound,
                                      "unknown method " + call.method +
                                          "; use schedules.list, schedules.pause or "
                                          "schedules.resume");
  }
  auto workflow = string_param(call.params, "workflow");
  // Workflow names are 1 to 64 characters: anything else is not one, and is not echoed back.
  if (!workflow || *workflow == "\x01" || workflow->empty() || workflow->size() > 64) {
    return reply_invalid(call, call.method + " needs \"workflow\", a workflow name");
  }
  if (journal_failed_ || draining_) {
    return reply_error(call, {ErrorCode::unavailable, "sagad cannot journal this now"});
  }
  auto done = [this, conn = call.conn, rid = call.id] {
    if (scheduler_) ControlServer::reply(conn, rid, scheduler_->list());
  };
  auto r = pause ? scheduler_->pause(*workflow, done) : scheduler_->resume(*workflow, done);
  if (!r) return reply_error(call, r.error());
  sync_schedules();  // re-arms: a paused schedule has no next fire
}

void Daemon::arm_retention(uint64_t first_ms) {
  uv_timer_start(
      retention_timer_, [](uv_timer_t* t) { static_cast<Daemon*>(t->data)->expire_instances(); },
      first_ms, retention_tick_ms_);
}

void Daemon::expire_instances() {
  if (journal_failed_ || draining_) return;
  // Small passes (200 deletions, 1,000 instances read), one after another while there is more,
  // so that retention keeps up with any load and never holds the loop for long.
  auto expired = journal_->expired(now_ms() - config_.retention, 200, &retention_scan_);
  if (!expired) {
    spdlog::warn("retention: {}", expired.error().message);
    return;
  }
  for (const auto& [id, created_at] : *expired) {
    if (find_live(id)) continue;
    if (auto removed = journal_->remove(id, created_at); !removed) {
      spdlog::warn("retention: {}", removed.error().message);
      return;
    }
  }
  retention_deleted_ += expired->size();
  if (!retention_scan_.after.empty()) return arm_retention(kRetentionPassGapMs);
  if (retention_deleted_ > 0) {  // once a sweep, however many passes it took
    spdlog::info("retention: deleted {} instances that ended more than {} ago", retention_deleted_,
                 format_duration(config_.retention));
    retention_deleted_ = 0;
  }
}

std::string Daemon::service_status() const {
  size_t running = 0, compensating = 0;
  for (const auto& [id, live] : live_) {
    if (live->inst.state == InstanceState::running) ++running;
    if (live->inst.state == InstanceState::compensating) ++compensating;
  }
  size_t attempts = executor_->busy();
  if (journal_failed_) {
    return "journal stopped, no new work: " + journal_error_ + "; restart sagad once fixed";
  }
  if (draining_) return fmt::format("draining: {} attempts still running", attempts);
  return fmt::format("{} running, {} compensating, {} attempts in flight, {} workflows", running,
                     compensating, attempts, workflows_->current().size());
}

void Daemon::begin_drain(const char* why) {
  if (draining_) return;
  draining_ = true;
  spdlog::info("{}: draining (waiting up to {} for running attempts)", why,
               format_duration(config_.grace));
  notifier_->stopping();
  for (auto& w : watches_) {
    ControlServer::notify(w.conn, "watch.dropped", {{"reason", "sagad is shutting down"}});
  }
  watches_.clear();
  server_->close();
  if (watcher_) close_handle(watcher_);
  drain_deadline_ = now_ms() + config_.grace;
  drain_timer_ = new uv_timer_t;
  uv_timer_init(&loop_, drain_timer_);
  drain_timer_->data = this;
  uv_timer_start(
      drain_timer_,
      [](uv_timer_t* t) {
        auto* self = static_cast<Daemon*>(t->data);
        if (self->executor_->busy() == 0) {
          self->finish_drain();
        } else if (now_ms() >= self->drain_deadline_) {
          if (self->drain_stopping_) {
            self->finish_drain();
          } else {
            self->stop_running_attempts();
          }
        }
      },
      0, 20);
}

void Daemon::stop_running_attempts() {
  drain_stopping_ = true;
  for (auto& [id, live] : live_) {
    for (const RunningAttempt& a : live->running) a.cancel->store(true);
  }
  // Long enough for a step type to stop what it runs (exec's program gets SIGTERM, then SIGKILL
  // half a second later), short of systemd's stop timeout.
  const Millis window = std::min<Millis>(config_.grace, kDrainStopWindow);
  spdlog::warn(
      "{} attempts still running after the grace period; told them to stop (waiting up to {}), "
      "and they run again after the restart",
      executor_->busy(), format_duration(window));
  drain_deadline_ = now_ms() + window;
}

void Daemon::finish_drain() {
  close_handle(drain_timer_);
  bool stuck = executor_->busy() > 0;
  if (stuck) {
    spdlog::warn("{} attempts did not stop; sagad exits without them", executor_->busy());
  }
  writer_->stop();  // everything submitted so far is now in the journal
  if (stuck) {
    executor_->detach();
    workers_detached_ = true;
  } else {
    executor_->stop();
  }
  close_handle(timer_);
  close_handle(debounce_);
  close_handle(retention_timer_);
  notifier_->close();
  for (auto*& s : signals_) close_handle(s);
  loop_queue_->close();
}

int Daemon::run() {
  // A client that hangs up while its replies are being written must cost an EPIPE on that
  // connection, not the process. Children get default dispositions back (the exec plugin
  // resets them when it spawns).
  std::signal(SIGPIPE, SIG_IGN);
  // Until the loop handles them (below), SIGTERM, SIGINT and SIGHUP wait: a stray SIGHUP during
  // recovery would otherwise end sagad (its default action), and a SIGTERM skip the drain. Every
  // thread started from here on keeps them blocked, so that the loop thread gets them.
  sigset_t handled;
  sigemptyset(&handled);
  for (int signum : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&handled, signum);
  pthread_sigmask(SIG_BLOCK, &handled, nullptr);
  if (auto opened = open(); !opened) {
    spdlog::critical("{}", opened.error().message);
    return 1;
  }
  uv_loop_init(&loop_);
  loop_queue_ = std::make_unique<LoopQueue>(&loop_);
  writer_ = std::make_unique<JournalWriter>(
      *journal_, [this](Durable durable, std::optional<Error> error) {
        loop_queue_->post([this, durable = std::move(durable), error = std::move(error)]() mutable {
          durable.run();
          if (error) on_journal_failure(*error);
        });
      });
  executor_ = std::make_unique<Executor>(*loop_queue_, config_.workers);
  timer_ = new uv_timer_t;
  uv_timer_init(&loop_, timer_);
  timer_->data = this;
  notifier_ = std::make_unique<SystemdNotifier>(&loop_, [this] { return service_status(); });

  load_plugins();
  if (auto kept = journal_->load_file_versions()) {
    file_versions_ = std::move(*kept);
  } else {
    spdlog::error("{}; a workflow file that fails to load now serves nothing",
                  kept.error().message);
  }
  workflows_ = std::make_unique<WorkflowRegistry>(
      [this](const std::string& uses) -> std::optional<StepSchema> {
        const StepTypeInfo* info = plugins_.find(uses);
        if (!info) return std::nullopt;
        return schema_of(*info);
      },
      [this](const std::string& path) -> std::optional<WorkflowRegistry::Kept> {
        auto version = file_versions_.find(path);
        if (version == file_versions_.end()) return std::nullopt;
        auto source = journal_->load_definition(version->second);
        if (!source || !*source) return std::nullopt;
        return WorkflowRegistry::Kept{version->second, std::move(**source)};
      });
  reload_workflows(/*log_every_error=*/true);
  recover_instances();
  start_scheduler();

  server_ = std::make_unique<ControlServer>(
      &loop_, [this](ControlServer::Call call) { on_call(std::move(call)); });
  if (auto listening = server_->listen(config_.socket_path); !listening) {
    spdlog::critical("{}", listening.error().message);
    draining_ = true;
    server_->close();
    finish_drain();
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
    return 1;
  }

  for (int signum : {SIGTERM, SIGINT, SIGHUP}) {
    auto* s = new uv_signal_t;
    uv_signal_init(&loop_, s);
    s->data = this;
    uv_signal_start(
        s,
        [](uv_signal_t* h, int sig) {
          auto* self = static_cast<Daemon*>(h->data);
          if (sig == SIGHUP) {
            spdlog::info("SIGHUP: reloading workflows and plugins");
            self->load_plugins();
            self->reload_workflows(/*log_every_error=*/true);
          } else {
            self->begin_drain(sig == SIGTERM ? "SIGTERM" : "SIGINT");
          }
        },
        signum);
    signals_.push_back(s);
  }
  pthread_sigmask(SIG_UNBLOCK, &handled, nullptr);  // what came meanwhile is handled now

  watcher_ = new uv_fs_event_t;
  uv_fs_event_init(&loop_, watcher_);
  watcher_->data = this;
  debounce_ = new uv_timer_t;
  uv_timer_init(&loop_, debounce_);
  debounce_->data = this;
  int watched = uv_fs_event_start(
      watcher_,
      [](uv_fs_event_t* h, const char*, int, int) {
        auto* self = static_cast<Daemon*>(h->data);
        // Editors write a file in several steps: reload once things have settled.
        uv_timer_start(
            self->debounce_,
            [](uv_timer_t* t) {
              auto* d = static_cast<Daemon*>(t->data);
              if (!d->draining_) d->reload_workflows();
            },
            200, 0);
      },
      config_.workflows_dir.c_str(), 0);
  if (watched != 0) {
    spdlog::warn("not watching {} for changes ({}); send SIGHUP to reload", config_.workflows_dir,
                 uv_strerror(watched));
    close_handle(watcher_);
  }

  retention_timer_ = new uv_timer_t;
  uv_timer_init(&loop_, retention_timer_);
  retention_timer_->data = this;
  retention_tick_ms_ =
      static_cast<uint64_t>(std::clamp<int64_t>(config_.retention.count() / 4, 500, 60'000));
  arm_retention(retention_tick_ms_);

  spdlog::info("sagad {} ready: {} workflows, {} instances in flight, socket {}", SAGA_VERSION,
               workflows_->current().size(), live_.size(), config_.socket_path);
  notifier_->ready();
  uv_run(&loop_, UV_RUN_DEFAULT);
  uv_loop_close(&loop_);
  spdlog::info("sagad stopped");
  if (workers_detached_) {
    // Detached workers still run plugin code: tearing down the plugin registry under them would
    // crash. The journal holds every commit already, so the process ends here, as after a kill.
    spdlog::default_logger()->flush();
    std::_Exit(0);
  }
  return 0;
}

}  // namespace

int run_daemon(const Config& config) {
  Daemon daemon(config);
  return daemon.run();
}

}  // namespace saga
