// A file sent as a stream of ModelChunks (ExportModel, WorkerService.FetchModel): the first
// carries the epoch and the file's size, each at most kChunkBytes; one write in flight.
#ifndef GRADLAB_SERVER_SERVICE_CHUNK_STREAM_H_
#define GRADLAB_SERVER_SERVICE_CHUNK_STREAM_H_

#include <algorithm>
#include <memory>
#include <string>
#include <utility>

#include "gradlab/v1/experiment_service.pb.h"
#include "server/auth/client_limits.h"
#include "server/service/server_stream.h"

namespace gradlab {

class ChunkStream : public ServerStream<v1::ModelChunk> {
 public:
  // Well under gRPC's default 4 MiB message limit.
  static constexpr size_t kChunkBytes = 1 << 20;

  // `slot` counts the stream for its client; null for streams not counted.
  ChunkStream(int epoch, std::string bytes, std::unique_ptr<ClientLimits::StreamSlot> slot)
      : epoch_(epoch), bytes_(std::move(bytes)), slot_(std::move(slot)) {
    Advance();
  }

 private:
  Step Next() override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (sent_all_) return End(grpc::Status::OK);
    chunk_.Clear();
    if (offset_ == 0) {
      chunk_.set_epoch(epoch_);
      chunk_.set_total_bytes(static_cast<int64_t>(bytes_.size()));
    }
    const size_t n = std::min(kChunkBytes, bytes_.size() - offset_);
    chunk_.set_data(bytes_.substr(offset_, n));
    offset_ += n;
    sent_all_ = offset_ == bytes_.size();  // an empty file is one empty chunk
    return Send(&chunk_);
  }

  const int epoch_;
  const std::string bytes_;
  const std::unique_ptr<ClientLimits::StreamSlot> slot_;
  size_t offset_ ABSL_GUARDED_BY(mu_) = 0;
  bool sent_all_ ABSL_GUARDED_BY(mu_) = false;
  v1::ModelChunk chunk_ ABSL_GUARDED_BY(mu_);
};

}  // namespace gradlab

#endif  // GRADLAB_SERVER_SERVICE_CHUNK_STREAM_H_
