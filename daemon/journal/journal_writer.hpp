// Group commit: one writer thread turns every write that arrived while the previous commit was
// in flight into the next single batch, so throughput grows with concurrency instead of being
// capped at one fsync per transition.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "journal/journal.hpp"

namespace saga {

struct CommitStats {
  uint64_t commits = 0;
  uint64_t writes = 0;  // instance writes, summed over commits
  uint64_t total_us = 0;
  std::vector<uint32_t> recent_us;  // latency of the most recent commits (up to 1024)
};

// What one commit made durable: the callbacks of its writes, which run() calls in submission
// order, each instance write's with the write it was submitted with (moved, not copied, from
// submission to callback).
class Durable {
 public:
  void run();

 private:
  friend class JournalWriter;
  // An instance write's entry has `on_write` (possibly empty) and stands for the next of
  // writes_; a schedule's has `fn`.
  struct Callback {
    std::function<void()> fn;
    std::function<void(InstanceWrite& written)> on_write;
    bool instance = false;
  };
  std::vector<Callback> callbacks_;
  std::vector<InstanceWrite> writes_;
};

class JournalWriter {
 public:
  // Called on the writer thread after each commit with what it made durable, or with the error
  // that stopped the writer (and an empty Durable). The daemon hands both to its loop thread.
  using Deliver = std::function<void(Durable durable, std::optional<Error> error)>;

  // `journal` must outlive the writer.
  JournalWriter(Journal& journal, Deliver deliver);
  ~JournalWriter();  // stop()
  JournalWriter(const JournalWriter&) = delete;
  JournalWriter& operator=(const JournalWriter&) = delete;

  // Called with the write it was submitted with, once that is durable: what was journaled comes
  // back to the submitter without a copy.
  using OnDurable = std::function<void(InstanceWrite& written)>;
  // Any thread. `on_durable` is delivered once the write is durable, never if it fails.
  void submit(InstanceWrite write, OnDurable on_durable);
  void submit_definition(std::string version, std::string source);
  // The version a workflow file last loaded as; nullopt once the file is gone.
  void submit_file_version(std::string path, std::optional<std::string> version);
  // A schedule record (nullopt deletes it); `on_durable` may be null.
  void submit_schedule(std::string key, std::optional<std::string> record,
                       std::function<void()> on_durable);
  // Commits what is pending, then joins the writer thread.
  void stop();
  CommitStats stats() const;

 private:
  void run();
  bool idle() const;  // nothing pending; under mu_

  Journal& journal_;
  Deliver deliver_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  CommitBatch pending_;                       // guarded by mu_
  std::atomic<bool> submitted_{false};        // an instance write is pending
  std::vector<Durable::Callback> callbacks_;  // guarded by mu_, for pending_
  bool stopping_ = false;                     // guarded by mu_
  bool failed_ = false;                       // guarded by mu_
  CommitStats stats_;                         // guarded by mu_
  std::thread thread_;
};

}  // namespace saga
