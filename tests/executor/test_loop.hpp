// A libuv loop with a LoopQueue on it, both made on the test's thread (its loop thread).
#pragma once

#include <uv.h>

#include "executor/loop_queue.hpp"

namespace saga::test {

struct Loop {
  uv_loop_t loop{};
  LoopQueue* queue = nullptr;
  Loop() {
    uv_loop_init(&loop);
    queue = new LoopQueue(&loop);
  }
  bool closed = false;
  void close() {
    if (!closed) queue->close();
    closed = true;
  }
  ~Loop() {
    close();
    uv_run(&loop, UV_RUN_DEFAULT);  // the handle's close callback
    delete queue;
    uv_loop_close(&loop);
  }
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;
  // One turn of the loop that does not block.
  void turn() { uv_run(&loop, UV_RUN_NOWAIT); }
};

}  // namespace saga::test
