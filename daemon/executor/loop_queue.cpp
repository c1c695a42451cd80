#include "executor/loop_queue.hpp"

namespace saga {

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
  std::vector<std::function<void()>> batch;
  {
    std::lock_guard lock(mu_);
    batch.swap(queue_);
  }
  // What other threads post meanwhile waits for the next loop turn (their post woke it), so that
  // a busy writer thread cannot keep the loop from its sockets; what this drain posts runs now.
  draining_ = true;
  while (!batch.empty()) {
    for (auto& fn : batch) fn();
    batch.clear();
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
