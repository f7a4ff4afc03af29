"""A small character language model in PyTorch, trained as an ablate job.

It has its own flags (a W&B sweep's ${args} passes them), reports train/loss
and valid/loss through ablate_run, checkpoints every --checkpoint-every steps
and when the worker stops it, and resumes from ablate's restored checkpoint.
On the CPU it is deterministic: a run resumed from a checkpoint reports the
same losses, bit for bit, as one never stopped. Standalone it trains the same
way and prints its metrics lines.
"""

import argparse
import os
import sys

import torch

try:
    import ablate_run
except ImportError:  # not installed: the module of the checkout this file is in
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                    "python"))
    import ablate_run

CHECKPOINT_FILE = "state.pt"
# Bytes of the corpus kept for validation (its end).
VALID_FRACTION = 0.1


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="/usr/share/common-licenses/GPL-3",
                   help="any text file (default: Debian's copy of the GPL, on every machine)")
    p.add_argument("--lr", type=float, default=0.003)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=32)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--eval-windows", type=int, default=32)
    p.add_argument("--checkpoint-every", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


class CharLm(torch.nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.embed = torch.nn.Embedding(256, hidden)
        self.rnn = torch.nn.GRU(hidden, hidden, batch_first=True)
        self.out = torch.nn.Linear(hidden, 256)

    def forward(self, x):
        h, _ = self.rnn(self.embed(x))
        return self.out(h)


def windows(data, starts, seq):
    idx = starts.unsqueeze(1) + torch.arange(seq + 1).unsqueeze(0)
    chunk = data[idx]
    return chunk[:, :-1], chunk[:, 1:]


def loss_of(model, inputs, targets):
    logits = model(inputs)
    return torch.nn.functional.cross_entropy(logits.reshape(-1, 256), targets.reshape(-1))


def evaluate(model, valid, args):
    # Fixed, evenly spaced windows: the same at every evaluation.
    span = len(valid) - args.seq - 1
    starts = torch.linspace(0, span, args.eval_windows).long()
    model.eval()
    with torch.no_grad():
        loss = loss_of(model, *windows(valid, starts, args.seq)).item()
    model.train()
    return loss


def save(path, model, optimizer, sampler, step):
    state = {
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "sampler_rng": sampler.get_state(),
    }
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)  # the directory never holds half a checkpoint


def main():
    args = parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    with open(args.data, "rb") as f:
        data = torch.tensor(list(f.read()), dtype=torch.long)
    cut = int(len(data) * (1 - VALID_FRACTION))
    train, valid = data[:cut], data[cut:]
    if len(valid) < args.seq + 2:
        sys.exit("train.py: %s is too short for --seq %d" % (args.data, args.seq))

    model = CharLm(args.hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    sampler = torch.Generator().manual_seed(args.seed)
    checkpoint = os.path.join(ablate_run.checkpoint_dir(), CHECKPOINT_FILE)

    step = ablate_run.resume_step()
    if step > 0:
        state = torch.load(checkpoint)
        if state["step"] != step:
            sys.exit("train.py: the checkpoint holds step %d, not %d" % (state["step"], step))
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        sampler.set_state(state["sampler_rng"])

    saved = step
    while step < args.steps and not ablate_run.stopping():
        step += 1
        starts = torch.randint(0, len(train) - args.seq - 1, (args.batch,), generator=sampler)
        loss = loss_of(model, *windows(train, starts, args.seq))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        metrics = {}
        if step % args.log_every == 0 or step == args.steps:
            metrics["train/loss"] = loss.item()
        if step % args.eval_every == 0 or step == args.steps:
            metrics["valid/loss"] = evaluate(model, valid, args)
        if metrics:
            ablate_run.log(step, metrics)
        if step % args.checkpoint_every == 0:
            save(checkpoint, model, optimizer, sampler, step)
            ablate_run.checkpoint(step)
            saved = step
    # Stopped by the worker: everything up to here is kept for the resume.
    if ablate_run.stopping() and saved != step:
        save(checkpoint, model, optimizer, sampler, step)
        ablate_run.checkpoint(step)


if __name__ == "__main__":
    main()
