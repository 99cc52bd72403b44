// Hand-off annotations for ThreadSanitizer. TSan sees only instrumented code,
// and Debian's libtbb is not: a value passed from one oneTBB pipeline stage to
// the next, or a parallel_for's tasks started and joined, synchronise inside
// the library where TSan cannot see it, so it would report every such value
// as a race. Each side of a hand-off names one sync object: Release after the
// writes, Acquire before the reads. Outside TSan builds these are empty.
#pragma once

#include <utility>

#if defined(__SANITIZE_THREAD__)
#define CSR_TSAN_ENABLED 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CSR_TSAN_ENABLED 1
#endif
#endif

#ifdef CSR_TSAN_ENABLED
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
#endif

namespace csr::tsan {

#ifdef CSR_TSAN_ENABLED
inline void Acquire(const void* sync) { __tsan_acquire(const_cast<void*>(sync)); }
inline void Release(const void* sync) { __tsan_release(const_cast<void*>(sync)); }
#else
inline void Acquire(const void*) {}
inline void Release(const void*) {}
#endif

// Acquires on construction and releases on destruction: the body of one
// pipeline stage or one parallel_for task, bracketed.
class Handoff {
 public:
  explicit Handoff(const void* sync) : sync_(sync) { Acquire(sync_); }
  ~Handoff() { Release(sync_); }
  Handoff(const Handoff&) = delete;
  Handoff& operator=(const Handoff&) = delete;

 private:
  const void* sync_;
};

// A oneTBB task body (a parallel_for body, a pipeline stage) with both of
// its hand-offs declared:
//  - its own memory: oneTBB copies a body into task objects in one thread
//    (when it splits a range) and runs it in another, so every copy releases
//    itself when made and every call acquires it before reading a capture;
//  - the data the body shares with the thread that started the work and with
//    the other calls: each call runs inside Handoff(sync). The starting thread
//    Releases(sync) before the work and Acquires(sync) after the join.
// Use: tbb::parallel_for(range, tsan::Task(&handoff, [&](auto& r) {...})).
// Pipeline stages must pass pointers or indices, not objects of class type:
// oneTBB constructs such a token from the body's return value after the body
// (and so its Release) has returned, and TSan would report its fields.
template <typename F>
class Task {
 public:
  Task(const void* sync, F f) : sync_(sync), f_(std::move(f)) { Release(this); }
  Task(const Task& other) : sync_((Acquire(&other), other.sync_)), f_(other.f_) { Release(this); }
  Task& operator=(const Task&) = delete;

  template <typename... Args>
  decltype(auto) operator()(Args&&... args) const {
    Acquire(this);
    Handoff h(sync_);
    return f_(std::forward<Args>(args)...);
  }

 private:
  const void* sync_;
  F f_;
};

}  // namespace csr::tsan
