#include "executor/loop_queue.hpp"

#include <algorithm>
#include <chrono>
#include <iterator>

namespace saga {

namespace {
// How long a drain goes on with what it posts itself before leaving it to the next loop turn.
constexpr auto kShortDrain = std::chrono::milliseconds(1);
}  // namespace

LoopQueue::LoopQueue(uv_loop_t* loop)
    : async_(new uv_async_t), loop_thread_(std::this_thread::get_id()) {
  uv_async_init(loop, async_, &LoopQueue::on_async);
  async_->data = this;
}

LoopQueue::~LoopQueue() = default;

void LoopQueue::post(std::function<void()> fn) {
  // The loop thread posting while it drains: the drain runs this before it returns. Only the
  // loop thread touches local_, and only while draining_ is set, which only it sets.
  if (draining_ && std::this_thread::get_id() == loop_thread_) {
    local_.push_back(std::move(fn));
    return;
  }
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    queue_.push_back(std::move(fn));
  }
  uv_async_send(async_);
}

void LoopQueue::on_async(uv_async_t* handle) {
  static_cast<LoopQueue*>(handle->data)->drain();
}

void LoopQueue::drain() {
  const auto started = std::chrono::steady_clock::now();
  std::vector<std::function<void()>> batch;
  {
    std::lock_guard lock(mu_);
    batch.swap(queue_);
  }
  // What other threads post meanwhile waits for the next loop turn (their post woke it), and so
  // does what this drain posts once it has run for kShortDrain: the loop gets back to its
  // sockets between long drains.
  draining_ = true;
  while (!batch.empty()) {
    for (auto& fn : batch) fn();
    batch.clear();
    if (local_.empty()) break;
    if (std::chrono::steady_clock::now() - started >= kShortDrain) {
      {
        std::lock_guard lock(mu_);
        if (!closed_) std::move(local_.begin(), local_.end(), std::back_inserter(queue_));
      }
      local_.clear();
      uv_async_send(async_);
      break;
    }
    batch.swap(local_);
  }
  draining_ = false;
}

void LoopQueue::close() {
  drain();
  {
    std::lock_guard lock(mu_);
    closed_ = true;
    queue_.clear();
  }
  async_->data = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(async_),
           [](uv_handle_t* h) { delete reinterpret_cast<uv_async_t*>(h); });
}

}  // namespace saga
