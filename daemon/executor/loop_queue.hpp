// Hands work from any thread to the loop thread: a mutex-guarded queue and one uv_async_t whose
// callback drains the whole queue, so that many sends coalesce into one wake-up. What the loop
// thread itself posts while a short drain runs (under a millisecond so far) runs in the same
// drain, after what was queued before it, without waking the loop again; what other threads
// post during a drain, and what a long drain posts, waits for the next loop turn.
#pragma once

#include <uv.h>

#include <atomic>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace saga {

class LoopQueue {
 public:
  // Must be constructed on the loop thread; close() must be called there before destruction.
  explicit LoopQueue(uv_loop_t* loop);
  ~LoopQueue();
  LoopQueue(const LoopQueue&) = delete;
  LoopQueue& operator=(const LoopQueue&) = delete;

  // Any thread. `fn` runs on the loop thread, in the order posted. Posts after close() are
  // dropped.
  void post(std::function<void()> fn);
  // Loop thread: runs what is queued, then closes the handle.
  void close();

 private:
  static void on_async(uv_async_t* handle);
  void drain();

  uv_async_t* async_;  // freed in its close callback
  std::mutex mu_;
  std::vector<std::function<void()>> queue_;  // guarded by mu_
  bool closed_ = false;                       // guarded by mu_
  // Loop thread only: set while drain() runs, and what the loop thread posts meanwhile.
  // draining_ is atomic only because post() reads it on any thread; other threads always see
  // it false or fail the thread check.
  std::atomic<bool> draining_{false};
  std::vector<std::function<void()>> local_;
  const std::thread::id loop_thread_;
};

}  // namespace saga
