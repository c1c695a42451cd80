#include "executor/loop_queue.hpp"

namespace saga {

LoopQueue::LoopQueue(uv_loop_t* loop)
    : async_(new uv_async_t), loop_thread_(std::this_thread::get_id()) {
  uv_async_init(loop, async_, &LoopQueue::on_async);
  async_->data = this;
}

LoopQueue::~LoopQueue() = default;

void LoopQueue::post(std::function<void()> fn) {
  bool wake = true;
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    queue_.push_back(std::move(fn));
    // The loop thread posting while it drains: the drain picks this up before it returns.
    if (draining_ && std::this_thread::get_id() == loop_thread_) wake = false;
  }
  if (wake) uv_async_send(async_);
}

void LoopQueue::on_async(uv_async_t* handle) {
  static_cast<LoopQueue*>(handle->data)->drain();
}

void LoopQueue::drain() {
  std::vector<std::function<void()>> batch;
  for (;;) {
    {
      std::lock_guard lock(mu_);
      batch.swap(queue_);
      draining_ = !batch.empty();
      if (!draining_) return;
    }
    for (auto& fn : batch) fn();
    batch.clear();  // keeps its capacity for the queue it is swapped with next
  }
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
