// CheckpointManager: the checkpoint files of running jobs, kept in one
// directory so that a job resumes on any worker, with no shared file system.
//
// An upload streams into a temporary file while its SHA-256 is computed. Only
// when all announced bytes arrived and the checksum matches is the file
// fsynced and renamed into place (job-<id>-step-<step>-<sha prefix>.ckpt);
// only then is the job's checkpoint committed to the database, and only after
// that commit is the previous file removed. A crash at any point leaves either
// the old or the new checkpoint in force, never a partial file; Start()
// removes the leftovers.
//
// Thread safety: all methods may be called from any thread. Completions of
// Begin*/FinishUpload run on the manager's I/O thread, where blocking file
// work is fine.
#ifndef ABLATE_COORDINATOR_CHECKPOINT_MANAGER_H_
#define ABLATE_COORDINATOR_CHECKPOINT_MANAGER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "coordinator/clock.h"
#include "coordinator/task_runner.h"
#include "proto/ablate.pb.h"
#include "store/writer.h"

namespace ablate {

// The largest chunk one stream message may carry.
inline constexpr size_t kCheckpointChunkBytes = size_t{1} << 20;

class Sha256;

// One upload in progress: a temporary file and a running checksum. Removes
// its file when destroyed unfinished.
class CheckpointUpload {
 public:
  ~CheckpointUpload();
  CheckpointUpload(const CheckpointUpload&) = delete;
  CheckpointUpload& operator=(const CheckpointUpload&) = delete;

  // Appends one chunk (a blocking write). InvalidArgument for a chunk over
  // kCheckpointChunkBytes or past the announced size; Unavailable when the
  // disk refuses.
  Status Append(std::string_view chunk);

 private:
  friend class CheckpointManager;
  CheckpointUpload(int64_t job_id, int64_t lease_token, v1::CheckpointInfo info, std::string temp,
                   int fd);

  const int64_t job_id_;
  const int64_t lease_token_;
  const v1::CheckpointInfo info_;
  std::string temp_path_;  // empty once renamed away
  int fd_;
  int64_t received_ = 0;
  std::unique_ptr<Sha256> sha_;
};

// One download in progress: an open checkpoint file.
class CheckpointDownload {
 public:
  ~CheckpointDownload();
  CheckpointDownload(const CheckpointDownload&) = delete;
  CheckpointDownload& operator=(const CheckpointDownload&) = delete;

  const v1::CheckpointInfo& info() const { return info_; }
  // Reads the next chunk of at most kCheckpointChunkBytes into `chunk`; false
  // once the whole file was read. DataLoss when the file is shorter than its
  // recorded size.
  StatusOr<bool> Read(std::string* chunk);

 private:
  friend class CheckpointManager;
  CheckpointDownload(v1::CheckpointInfo info, int fd) : info_(std::move(info)), fd_(fd) {}

  const v1::CheckpointInfo info_;
  int fd_;
  int64_t sent_ = 0;
};

class CheckpointManager {
 public:
  template <typename T>
  using Callback = std::function<void(StatusOr<T>)>;

  // `writer` and `clock` must outlive the manager.
  CheckpointManager(std::string dir, Writer* writer, Clock* clock);
  ~CheckpointManager();

  // Creates the directory and removes temporary files and checkpoints no job
  // refers to (left by a crash). Call once before serving.
  Status Start();

  // Validates an upload's first message and checks its lease. `first.chunk`
  // is not consumed: Append it next.
  void BeginUpload(const v1::UploadCheckpointRequest& first,
                   Callback<std::unique_ptr<CheckpointUpload>> done);
  // Verifies size and checksum (DataLoss when they do not match; nothing is
  // stored), puts the file in place and commits it as the job's checkpoint
  // if the lease is still current. The same upload repeated is a no-op; an
  // upload of an older step than the stored one is FailedPrecondition.
  void FinishUpload(std::unique_ptr<CheckpointUpload> upload, v1::UploadCheckpointResponse* reply,
                    Writer::Done done);

  // Checks the lease and opens the job's current checkpoint; NotFound when
  // the job has none.
  void BeginDownload(const v1::DownloadCheckpointRequest& request,
                     Callback<std::unique_ptr<CheckpointDownload>> done);
  // Opens job `job_id`'s current checkpoint whatever its state, for a user
  // (`ablate checkpoint`); NotFound for an unknown job or one without one.
  void BeginJobDownload(int64_t job_id, Callback<std::unique_ptr<CheckpointDownload>> done);

  // Removes checkpoint file `name` from the directory, on the I/O thread:
  // one the database no longer refers to.
  void Remove(const std::string& name);

  const std::string& dir() const { return dir_; }

 private:
  void Commit(std::shared_ptr<CheckpointUpload> upload, std::string final_path,
              v1::UploadCheckpointResponse* reply, Writer::Done done);
  // Opens the job's checkpoint, checking the lease when a token is given.
  void Open(int64_t job_id, std::optional<int64_t> lease_token,
            Callback<std::unique_ptr<CheckpointDownload>> done);

  const std::string dir_;
  Writer* const writer_;
  Clock* const clock_;
  // Declared last: destroyed first, so queued tasks still see the rest.
  std::unique_ptr<TaskRunner> io_;
};

}  // namespace ablate

#endif  // ABLATE_COORDINATOR_CHECKPOINT_MANAGER_H_
