#!/usr/bin/env python3
"""What PyTorch itself does with the seed's workload on a GPU, to set beside
ablate's CUDA trainer in the same run (scripts/gpu-check.sh).

One training step each (forward, cross entropy, backward, Adam, the state
carried to the next window) of:
  gru, lstm   torch.nn.GRU / torch.nn.LSTM: cuDNN's fused RNNs, no layer
              norm; cuDNN's GRU applies the reset gate after the product
              (not the seed's cell, the nearest fast thing PyTorch has)
  gru_ln      the seed's GRU with layer norm (shared/MODEL.md) in plain
              eager PyTorch, one timestep at a time
at the given size and precision: fp32 (no TF32 anywhere), tf32 (TF32
products), bf16 (autocast to bfloat16, fp32 master weights).

Prints one JSON object per line: model, precision, ms_per_step (median),
peak_mib (the most memory PyTorch held in tensors), device.
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class CudnnRnn(nn.Module):
    def __init__(self, kind, vocab, hidden):
        super().__init__()
        self.embed = nn.Embedding(vocab, 256)
        self.rnn = (nn.GRU if kind == "gru" else nn.LSTM)(256, hidden)
        self.out = nn.Linear(hidden, vocab)
        self.kind = kind

    def forward(self, tokens, state):
        y, state = self.rnn(self.embed(tokens), state)
        return self.out(y), state

    def initial_state(self, batch, hidden, device):
        h = torch.zeros(1, batch, hidden, device=device)
        return h if self.kind == "gru" else (h, torch.zeros_like(h))


class LayerNormGru(nn.Module):
    """The seed's cell: reset before the recurrent product, layer norm on
    each projection before the sum, bias after."""

    def __init__(self, vocab, hidden):
        super().__init__()
        h = hidden
        self.w_x = nn.Parameter(torch.randn(vocab, 3 * h) * (6 / (vocab + 3 * h)) ** 0.5)
        self.b = nn.Parameter(torch.cat([torch.full((2 * h,), -1.0), torch.zeros(h)]))
        self.w_h = nn.Parameter(torch.randn(h, 2 * h) * (1 / h) ** 0.5)
        self.w_hc = nn.Parameter(torch.randn(h, h) * (1 / h) ** 0.5)
        self.ln_x = nn.ModuleList([nn.LayerNorm(2 * h), nn.LayerNorm(h)])
        self.ln_h = nn.LayerNorm(2 * h)
        self.ln_c = nn.LayerNorm(h)
        self.out = nn.Linear(h, vocab)
        self.hidden = h

    def forward(self, tokens, h):
        hd = self.hidden
        table = torch.cat([self.ln_x[0](self.w_x[:, : 2 * hd]), self.ln_x[1](self.w_x[:, 2 * hd :])], 1)
        xg = (table + self.b)[tokens]
        hs = []
        for t in range(tokens.shape[0]):
            gates = torch.sigmoid(xg[t, :, : 2 * hd] + self.ln_h(h @ self.w_h))
            u, r = gates[:, :hd], gates[:, hd:]
            c = torch.tanh(xg[t, :, 2 * hd :] + self.ln_c((r * h) @ self.w_hc))
            h = h + u * (c - h)
            hs.append(h)
        return self.out(torch.stack(hs)), h

    def initial_state(self, batch, hidden, device):
        return torch.zeros(batch, hidden, device=device)


def detach(state):
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


def time_model(name, precision, args, device):
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    torch.backends.cudnn.allow_tf32 = precision == "tf32"
    torch.manual_seed(0)
    model = LayerNormGru(args.vocab, args.hidden) if name == "gru_ln" else CudnnRnn(name, args.vocab, args.hidden)
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    data = torch.randint(0, args.vocab, (args.steps + args.warmup, args.seq + 1, args.batch), device=device)
    state = model.initial_state(args.batch, args.hidden, device)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for i in range(args.warmup + args.steps):
        if cuda:
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits, state = model(data[i, :-1], state)
            loss = F.cross_entropy(logits.reshape(-1, args.vocab).float(), data[i, 1:].reshape(-1))
        opt.zero_grad(set_to_none=False)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        state = detach(state)
        if cuda:
            torch.cuda.synchronize(device)
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    return {
        "model": name,
        "precision": precision,
        "hidden": args.hidden,
        "batch": args.batch,
        "seq": args.seq,
        "vocab": args.vocab,
        "ms_per_step": 1000 * statistics.median(times),
        "ms_per_step_min": 1000 * min(times),
        "peak_mib": torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None,
        "loss": loss.item(),
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "torch": torch.__version__,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="gru,lstm,gru_ln")
    parser.add_argument("--precisions", default="fp32,tf32,bf16")
    parser.add_argument("--hidden", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--seq", type=int, default=200)
    parser.add_argument("--vocab", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    device = torch.device(args.device)
    for precision in args.precisions.split(","):
        for name in args.models.split(","):
            print(json.dumps(time_model(name, precision, args, device)), flush=True)


if __name__ == "__main__":
    main()
