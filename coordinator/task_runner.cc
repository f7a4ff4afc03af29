#include "coordinator/task_runner.h"

#include <utility>

namespace ablate {

TaskRunner::TaskRunner() : thread_([this] { Loop(); }) {}

TaskRunner::~TaskRunner() {
  {
    MutexLock lock(&mu_);
    stopping_ = true;
  }
  wake_.Signal();
  thread_.join();
}

void TaskRunner::Post(std::function<void()> task) {
  {
    MutexLock lock(&mu_);
    tasks_.push_back(std::move(task));
  }
  wake_.Signal();
}

void TaskRunner::Loop() {
  while (true) {
    std::function<void()> task;
    {
      MutexLock lock(&mu_);
      while (!stopping_ && tasks_.empty()) wake_.Wait();
      if (tasks_.empty()) return;
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
}

}  // namespace ablate
