#include "thread_pool.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace i2f {
namespace {

// One job at a time: the caller publishes it, wakes the workers it wants and takes indices itself.
class Pool {
public:
    ~Pool() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stopping_ = true;
        }
        wake_.notify_all();
        for (auto& worker : workers_) worker.join();
    }

    void run(std::int64_t helpers, std::int64_t count, const std::function<void(std::int64_t)>& body) {
        std::lock_guard<std::mutex> turn(turn_);  // one parallel loop at a time
        helpers = std::min<std::int64_t>(helpers, count - 1);
        if (helpers <= 0) {
            serial_for(count, body);
            return;
        }
        {
            std::lock_guard<std::mutex> lock(mutex_);
            while (static_cast<std::int64_t>(workers_.size()) < helpers)
                workers_.emplace_back([this, index = static_cast<std::int64_t>(workers_.size())] { work(index); });
            body_ = &body;
            count_ = count;
            next_.store(0);
            helpers_ = helpers;
            busy_ = helpers;
            ++generation_;
        }
        wake_.notify_all();
        take(body, count);
        std::unique_lock<std::mutex> lock(mutex_);
        done_.wait(lock, [this] { return busy_ == 0; });
        body_ = nullptr;
    }

private:
    void take(const std::function<void(std::int64_t)>& body, std::int64_t count) {
        for (std::int64_t index = next_.fetch_add(1); index < count; index = next_.fetch_add(1)) body(index);
    }

    void work(std::int64_t index) {
        std::uint64_t seen = 0;
        std::unique_lock<std::mutex> lock(mutex_);
        while (true) {
            wake_.wait(lock, [&] { return stopping_ || (generation_ != seen && index < helpers_); });
            if (stopping_) return;
            seen = generation_;
            const auto* body = body_;
            const std::int64_t count = count_;
            lock.unlock();
            take(*body, count);
            lock.lock();
            if (--busy_ == 0) done_.notify_one();
        }
    }

    std::mutex turn_;
    std::mutex mutex_;
    std::condition_variable wake_;
    std::condition_variable done_;
    std::vector<std::thread> workers_;
    const std::function<void(std::int64_t)>* body_ = nullptr;
    std::int64_t count_ = 0;
    std::atomic<std::int64_t> next_{0};
    std::int64_t helpers_ = 0;
    std::int64_t busy_ = 0;
    std::uint64_t generation_ = 0;
    bool stopping_ = false;
};

Pool& pool() {
    static Pool instance;
    return instance;
}

}  // namespace

ParallelFor pooled_for(std::int64_t threads) {
    if (threads <= 1) return serial_for;
    return [threads](std::int64_t count, const std::function<void(std::int64_t)>& body) { pool().run(threads - 1, count, body); };
}

}  // namespace i2f
