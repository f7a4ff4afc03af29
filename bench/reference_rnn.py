#!/usr/bin/python3
"""Plain PyTorch eager reference of ablate's model, for side-by-side speed.

The same cell equations as shared/MODEL.md (GRU with reset before the
recurrent matmul, MGU, LSTM; layer norm on each projection), written the way a
PyTorch user would: the input projection for all steps at once (an embedding
gather plus layer norm), then a per-step loop under autograd, Adam and
clip_grad_norm_. Runs on Debian's python3-torch, the same LibTorch 1.13 the
C++ trainer links, with the same thread count.

    /usr/bin/python3 bench/reference_rnn.py --cell gru --layer-norm --hidden 128 \
        --batch 32 --seq 100 --steps 10 --threads 2
Prints one JSON object.
"""
import argparse
import json
import resource
import time

import torch
import torch.nn.functional as F


class CharRnn(torch.nn.Module):
    def __init__(self, cell, layer_norm, hidden, vocab):
        super().__init__()
        self.cell, self.ln, self.hidden = cell, layer_norm, hidden
        gates = {"lstm": 4 * hidden, "gru": 2 * hidden, "mgu": hidden}[cell]
        self.groups = [gates] if cell == "lstm" else [gates, hidden]
        width = sum(self.groups)
        P = torch.nn.Parameter
        self.w_x = P(torch.empty(vocab, width))
        self.b_x = P(torch.zeros(width))
        self.w_h = P(torch.empty(hidden, gates))
        if cell != "lstm":
            self.w_hc = P(torch.empty(hidden, hidden))
        if layer_norm:
            self.ln_x = torch.nn.ModuleList(torch.nn.LayerNorm(g) for g in self.groups)
            self.ln_h = torch.nn.LayerNorm(gates)
            self.ln_2 = torch.nn.LayerNorm(hidden)
        self.out = torch.nn.Linear(hidden, vocab)
        for w in [self.w_x, self.w_h, self.out.weight] + ([self.w_hc] if cell != "lstm" else []):
            torch.nn.init.xavier_uniform_(w)
        with torch.no_grad():
            if cell == "lstm":
                self.b_x[:hidden] = 1.0
            else:
                self.b_x[:gates] = -1.0

    def norm(self, module, x):
        return module(x) if self.ln else x

    def forward(self, tokens, state):
        xs = F.embedding(tokens, self.w_x)  # [T, B, width]
        if self.ln:
            xs = torch.cat([ln(p) for ln, p in zip(self.ln_x, xs.split(self.groups, -1))], -1)
        xs = xs + self.b_x
        h, c = state
        outputs = []
        for x in xs:
            if self.cell == "lstm":
                a = x + self.norm(self.ln_h, h @ self.w_h)
                f, i, o, g = a.chunk(4, 1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(self.norm(self.ln_2, c))
            else:
                gate_width = self.groups[0]
                gates = torch.sigmoid(x[:, :gate_width] + self.norm(self.ln_h, h @ self.w_h))
                u = gates[:, :self.hidden]
                r = gates[:, self.hidden:] if self.cell == "gru" else u
                cand = torch.tanh(x[:, gate_width:] + self.norm(self.ln_2, (r * h) @ self.w_hc))
                h = h + u * (cand - h)
            outputs.append(h)
        return self.out(torch.stack(outputs)), (h, c)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cell", default="gru")
    p.add_argument("--layer-norm", action="store_true")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=100)
    p.add_argument("--vocab", type=int, default=256)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = CharRnn(a.cell, a.layer_norm, a.hidden, a.vocab)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    data = torch.randint(0, a.vocab, (a.seq + 1, a.batch))
    state = (torch.zeros(a.batch, a.hidden), torch.zeros(a.batch, a.hidden))
    times = []
    for step in range(a.warmup + a.steps):
        start = time.perf_counter()
        logits, (h, c) = model(data[:-1], state)
        loss = F.cross_entropy(logits.reshape(-1, a.vocab), data[1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        state = (h.detach(), c.detach())
        loss.item()
        if step >= a.warmup:
            times.append(time.perf_counter() - start)
    times.sort()
    median = times[len(times) // 2]
    print(json.dumps({
        "impl": "pytorch-eager",
        "cell": a.cell, "layer_norm": a.layer_norm, "hidden": a.hidden, "batch": a.batch,
        "seq": a.seq, "vocab": a.vocab, "threads": torch.get_num_threads(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "step_seconds": median, "bytes_per_s": a.batch * a.seq / median,
        "peak_memory_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    main()
