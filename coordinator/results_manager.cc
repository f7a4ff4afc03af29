#include "coordinator/results_manager.h"

#include <utility>

#include "store/reader.h"
#include "store/results.h"
#include "store/store.h"

namespace ablate {

void ResultsManager::Results(const v1::ResultsRequest& request, v1::ResultsResponse* reply,
                             Writer::Done done) {
  Run(
      [&request, reply](Database& db) -> Status {
        ABLATE_ASSIGN_OR_RETURN(*reply, QueryResults(db, request));
        return Status::OK();
      },
      std::move(done));
}

void ResultsManager::Curves(const v1::CurvesRequest& request, v1::CurvesResponse* reply,
                            Writer::Done done) {
  Run(
      [&request, reply](Database& db) -> Status {
        ABLATE_ASSIGN_OR_RETURN(*reply, QueryCurves(db, request));
        return Status::OK();
      },
      std::move(done));
}

void ResultsManager::GetJob(const v1::GetJobRequest& request, v1::GetJobResponse* reply,
                            Writer::Done done) {
  Run([&request, reply](Database& db) { return StoreReader(&db).GetJob(request, reply); },
      std::move(done));
}

void ResultsManager::Run(Writer::Op query, Writer::Done done) {
  if (db_path_ == ":memory:") {
    writer_->Submit(std::move(query), std::move(done));
    return;
  }
  runner_.Post([this, query = std::move(query), done = std::move(done)] {
    if (!reader_) {
      StatusOr<std::unique_ptr<Database>> db = OpenStoreReadOnly(db_path_);
      if (!db.ok()) return done(db.status().WithContext("opening a reading connection"));
      reader_ = std::move(db).value();
    }
    done(query(*reader_));
  });
}

}  // namespace ablate
