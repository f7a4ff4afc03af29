// Weight initializers of the seed's experiment. Each fills one weight matrix
// in place (rows = fan_in, columns = fan_out, as in `x W`), drawing from the
// given generator so a run is reproducible from its seed.
#ifndef ABLATE_WORKER_INIT_H_
#define ABLATE_WORKER_INIT_H_

#include <torch/torch.h>

#include "common/run_config.h"

namespace ablate {

// Uniform in +-sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010).
void XavierUniform(torch::Tensor w, at::Generator& gen);

// He et al. 2015: truncated normal, scale 2, fan_in mode, as TensorFlow's
// VarianceScaling(2.0, "fan_in", "truncated_normal"): values beyond two
// standard deviations are redrawn, and the standard deviation is corrected so
// the truncated distribution has variance 2 / fan_in.
void VarianceScaling(torch::Tensor w, at::Generator& gen);

// (Semi-)orthogonal (Saxe et al. 2014) via QR of a Gaussian matrix with the
// sign fix that makes the result uniformly distributed: a square matrix gets
// Q^T Q = I; a wide one orthonormal rows, a tall one orthonormal columns.
void Orthogonal(torch::Tensor w, at::Generator& gen);

// Applies `init` to a weight matrix made of gate groups side by side.
// Xavier and variance scaling treat each group of `group_cols` columns as one
// weight matrix (its fan_out is the group's width, as a dense layer producing
// that group would); orthogonal makes each gate of `gate_cols` columns
// (semi-)orthogonal on its own, so the H x H blocks of a recurrent matrix are
// orthogonal.
void InitWeight(Init init, torch::Tensor w, int64_t group_cols, int64_t gate_cols,
                at::Generator& gen);

}  // namespace ablate

#endif  // ABLATE_WORKER_INIT_H_
