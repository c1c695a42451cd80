#include "executor/loop_queue.hpp"

#include <uv.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <thread>
#include <vector>

#include "test_loop.hpp"

using namespace saga;

using saga::test::Loop;

TEST_CASE("what the loop thread posts while draining runs in the same drain, in order") {
  Loop l;
  std::vector<int> order;
  l.queue->post([&] {
    order.push_back(1);
    l.queue->post([&] {
      order.push_back(3);
      l.queue->post([&] { order.push_back(4); });
    });
  });
  l.queue->post([&] { order.push_back(2); });
  l.turn();
  CHECK(order == std::vector<int>{1, 2, 3, 4});
  // Nothing was left for a later turn.
  l.turn();
  CHECK(order.size() == 4);
}

TEST_CASE("a drain that has run long leaves what it posts to the next turn") {
  Loop l;
  std::vector<int> order;
  l.queue->post([&] {
    order.push_back(1);
    // Longer than a short drain: the loop should get back to its sockets first.
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(5);
    while (std::chrono::steady_clock::now() < until) {
    }
    l.queue->post([&] { order.push_back(2); });
  });
  l.turn();
  CHECK(order == std::vector<int>{1});
  for (int i = 0; i < 100 && order.size() < 2; ++i) uv_run(&l.loop, UV_RUN_ONCE);
  CHECK(order == std::vector<int>{1, 2});
}

TEST_CASE("what another thread posts during a drain waits for the next turn, which it wakes") {
  Loop l;
  std::atomic<int> ran{0};
  l.queue->post([&] {
    ++ran;
    // Another thread posts during this drain: it must not extend the drain (a busy writer
    // thread would keep the loop from its sockets), and must not be lost either.
    std::thread([&] { l.queue->post([&] { ++ran; }); }).join();
  });
  l.turn();
  CHECK(ran == 1);
  for (int i = 0; i < 100 && ran < 2; ++i) uv_run(&l.loop, UV_RUN_ONCE);
  CHECK(ran == 2);
}

TEST_CASE("posts after close are dropped") {
  Loop l;
  int ran = 0;
  l.queue->post([&] { ++ran; });
  l.close();
  l.queue->post([&] { ++ran; });
  CHECK(ran == 1);
}
