// A program's checkpoint directory as one file: the zip archive the worker
// uploads through the job's checkpoint path, and the extraction that puts it
// back before a resumed attempt starts the program.
#ifndef ABLATE_WORKER_CHECKPOINT_ARCHIVE_H_
#define ABLATE_WORKER_CHECKPOINT_ARCHIVE_H_

#include <string>

#include "common/status.h"

namespace ablate {

// Writes every regular file and folder under `dir` into a zip archive at
// `archive_path`, replacing it whole (libzip writes a temporary file and
// renames it), with `comment` as the archive's comment. Files are stored
// uncompressed: checkpoints are mostly weights, which do not compress, and
// are written often. Other entries (links, sockets) are skipped. Errors
// name the file at fault.
Status ArchiveDirectory(const std::string& dir, const std::string& archive_path,
                        const std::string& comment);

// Extracts the archive at `archive_path` into the existing folder `dir` and
// returns the archive's comment. An entry whose name is absolute or has a
// ".." component, or that is a link, is refused before anything is written:
// InvalidArgument naming it. A file that is not a readable zip: DataLoss.
StatusOr<std::string> ExtractArchive(const std::string& archive_path, const std::string& dir);

}  // namespace ablate

#endif  // ABLATE_WORKER_CHECKPOINT_ARCHIVE_H_
