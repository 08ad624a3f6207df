// Ring buffer consumer: a dedicated thread polls (ring_buffer__poll with a timeout so it can stop) and
// hands each poll's records to JS as one batch through a ThreadSafeFunction. The event loop never
// blocks; if JS falls behind, the queue is bounded and the poll thread waits, so the kernel side fills
// and the BPF program's reservations fail (events are sampled telemetry, dropping them is the design).
#include <bpf/libbpf.h>
#include <errno.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "addon.h"
#include "args.h"
#include "errors.h"

namespace sluice {

namespace {

using Batch = std::vector<std::vector<uint8_t>>;

class RingBuffer : public Napi::ObjectWrap<RingBuffer> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "RingBuffer",
                       {InstanceMethod("stop", &RingBuffer::Stop), InstanceMethod("ref", &RingBuffer::Ref),
                        InstanceMethod("unref", &RingBuffer::Unref)});
  }

  // new RingBuffer(mapFd, onRecords(records: Buffer[]), { pollMs = 100 })
  explicit RingBuffer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<RingBuffer>(info) {
    Napi::Env env = info.Env();
    int64_t fd;
    if (info.Length() < 2 || !IntArg(info[0], &fd) || !info[1].IsFunction()) {
      ThrowArg(env, "RingBuffer", "expects (mapFd, onRecords, options?)");
      return;
    }
    int64_t poll_ms = 100;
    if (info.Length() > 2 && info[2].IsObject()) IntArg(info[2].As<Napi::Object>().Get("pollMs"), &poll_ms);
    poll_ms_ = static_cast<int>(poll_ms);
    rb_ = ring_buffer__new(static_cast<int>(fd), &RingBuffer::OnSample, this, nullptr);
    if (!rb_) {
      ThrowErrno(env, "ring_buffer__new", errno);
      return;
    }
    tsfn_ = Napi::ThreadSafeFunction::New(env, info[1].As<Napi::Function>(), "sluice-ringbuf", 64, 1);
    running_ = true;
    thread_ = std::thread([this] { Run(); });
  }

  ~RingBuffer() override { Shutdown(); }

 private:
  static int OnSample(void* ctx, void* data, size_t size) {
    auto* self = static_cast<RingBuffer*>(ctx);
    auto* p = static_cast<uint8_t*>(data);
    self->pending_.emplace_back(p, p + size);
    return 0;
  }

  static void Deliver(Napi::Env env, Napi::Function fn, Batch* batch) {
    if (env != nullptr && fn != nullptr) {
      Napi::Array arr = Napi::Array::New(env, batch->size());
      for (size_t i = 0; i < batch->size(); i++) {
        auto& rec = (*batch)[i];
        arr.Set(static_cast<uint32_t>(i), Napi::Buffer<uint8_t>::Copy(env, rec.data(), rec.size()));
      }
      fn.Call({arr});
    }
    delete batch;
  }

  void Run() {
    while (!stopping_.load()) {
      int n = ring_buffer__poll(rb_, poll_ms_);
      if (n < 0 && n != -EINTR) {
        poll_error_ = -n;
        break;
      }
      if (pending_.empty()) continue;
      auto* batch = new Batch(std::move(pending_));
      pending_.clear();
      for (;;) {
        napi_status st = tsfn_.NonBlockingCall(batch, Deliver);
        if (st == napi_ok) break;
        if (st != napi_queue_full || stopping_.load()) {
          delete batch;
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    }
  }

  void Shutdown() {
    if (!running_) return;
    running_ = false;
    stopping_ = true;
    if (thread_.joinable()) thread_.join();
    ring_buffer__free(rb_);
    rb_ = nullptr;
    tsfn_.Release();
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    Shutdown();
    if (poll_error_) return ThrowErrno(info.Env(), "ring_buffer__poll", poll_error_);
    return info.Env().Undefined();
  }

  Napi::Value Ref(const Napi::CallbackInfo& info) {
    if (running_) tsfn_.Ref(info.Env());
    return info.Env().Undefined();
  }

  Napi::Value Unref(const Napi::CallbackInfo& info) {
    if (running_) tsfn_.Unref(info.Env());
    return info.Env().Undefined();
  }

  ring_buffer* rb_ = nullptr;
  Napi::ThreadSafeFunction tsfn_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  bool running_ = false;
  int poll_ms_ = 100;
  int poll_error_ = 0;
  Batch pending_;  // touched only by the poll thread
};

}  // namespace

Napi::Object InitRingBuffer(Napi::Env env, Napi::Object exports) {
  exports.Set("RingBuffer", RingBuffer::Define(env));
  return exports;
}

}  // namespace sluice
