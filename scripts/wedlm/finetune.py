#!/usr/bin/env python3
"""finetune.py - self-distillation fine-tune of a WeDLM GGUF: the mask stream learns to predict the model's
OWN AR greedy continuation W tokens ahead (Medusa / lookahead-style), while the AR stream is held in place.

Data: distill_data.py's jsonl (prompt_tokens = [BOS] + P-1 real tokens, tokens = N greedy tokens of the
original model). A sample x = prompt + greedy, length T = P + N.
Per sample the input is [x0 ; xt]:
  x0 = x (clean, positions 0..T-1, causal)  ->  AR loss: next-token CE (real text in the prompt, the
       teacher's own argmax in the continuation) + kl_w * KL(teacher AR || student AR) at every position.
  xt = n_win windows of W mask tokens; window k starts at s_k = P + o + k*W (o ~ U[0, W) per batch, so
       s_k >= P: the greedy rollout from any prefix x[:s] with s >= P is x[s:]); slot j of window k has
       position s_k + j, attends x0 keys at positions < s_k and the slots <= j of its own window (the
       state of a decode window right after the committed prefix); target x[s_k + j] (the greedy token).
  loss = mlm (mean CE over all slots) + ar_w * AR CE + kl_w * KL.
Real-text batches (--real-batch R > 0): R plain Python cuts of --real-len tokens per step from non-test *.py
files (distill_data.py's file rule: no `test` in any path component, so never the held-out test files; files
holding a bench prompt skipped), loss + real_ar_w * next-token CE (the data) + real_kl_w * KL(teacher || student)
(the original's distribution), so the AR stream sees the text it is scored on, not only its own greedy output.
--greedy-ar prompt: the AR CE of the greedy samples covers only their real prompt tokens (CE on the teacher's
argmax tokens sharpens the AR distribution and costs NLL); KL stays at every position.
--mask-conf c: a mask slot counts only where the original is confident along the window: the teacher's AR
probability of the greedy token is >= c at that slot and at every slot before it in its window (a slot behind
an unsure token is rejected by exact decoding anyway); the mask loss is the mean over the counted slots.
Teacher = the frozen --gguf model; --init-ckpt starts the student from a finetune.py ckpt.pt of the same
architecture instead (continue a run: fresh AdamW state and LR warmup, the teacher stays the original). CPU: --threads 1, nice -n 19.
Eval (held-out distill samples + held-out real Python from test files the data never used): mask accuracy
vs greedy per window distance, AR agreement with the teacher's argmax, AR NLL on real text (student vs teacher),
and with --real-batch the AR NLL of a dev set of non-test real text (files the real-text pool does not use).
Saves a train.py-compatible ckpt.pt (export with export_gguf.py --ckpt ... --tokenizer <json>), or
directly a GGUF with --gguf-out.
"""
import argparse
import glob
import json
import math
import os
import random
import signal
import sys
import time

T_START = time.time()
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gguf_load import load_gguf_model, gguf_tokenizer  # noqa: E402
from distill_data import list_files, read_source  # noqa: E402


def log(*a):
    print(*a, flush=True)


def build_mask(T, P, W, n_win, o):
    """Bool attention mask [T + n_win*W][T + n_win*W] (True = attend) and xt positions [n_win*W]."""
    n = n_win * W
    M = torch.zeros(T + n, T + n, dtype=torch.bool)
    M[:T, :T] = torch.ones(T, T, dtype=torch.bool).tril()
    pos = torch.zeros(n, dtype=torch.long)
    for k in range(n_win):
        s = P + o + k * W
        r0 = T + k * W
        for j in range(W):
            M[r0 + j, :s] = True
            M[r0 + j, r0:r0 + j + 1] = True
            pos[k * W + j] = s + j
    return M, pos


def real_text_batches(tok, bos, n_seq, L, seed, exclude_text):
    """Held-out real Python: cuts of test files (never in the distill data nor in the original training set)."""
    files = sorted(set(glob.glob("/usr/lib/python3/dist-packages/**/test_*.py", recursive=True)))
    rng = random.Random(seed)
    rng.shuffle(files)
    out = []
    for f in files:
        if len(out) == n_seq:
            break
        t = read_source(f, exclude_text, min_len=4000, max_len=None)
        if t is None:
            continue
        st0 = rng.randrange(0, len(t) - 3000)
        st0 = t.find("\n", st0) + 1          # whole lines only; tokenize a slice (Python BPE is slow)
        ids = tok.encode(t[st0:st0 + 3000])
        if len(ids) < L + 10:
            continue
        out.append([bos] + ids[:L - 1])
    return torch.tensor(out)


def real_text_pool(tok, bos, files, n_seq, L, seed, exclude_text, per_file=4):
    """Training real Python: up to per_file cuts of [BOS] + L-1 tokens (whole lines) per file of `files`."""
    rng = random.Random(seed)
    files = files[:]
    rng.shuffle(files)
    out = []
    for f in files:
        if len(out) >= n_seq:
            break
        t = read_source(f, exclude_text)
        if t is None:
            continue
        for _ in range(per_file):
            st0 = rng.randrange(0, max(1, len(t) - 2000))
            st0 = t.find("\n", st0) + 1 if st0 else 0
            ids = tok.encode(t[st0:st0 + 6 * L])
            if len(ids) >= L - 1:
                out.append([bos] + ids[:L - 1])
    return torch.tensor(out[:n_seq])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", required=True, help="starting model (also the frozen teacher)")
    ap.add_argument("--init-ckpt", default="", help="start the student from this ckpt.pt (teacher stays --gguf)")
    ap.add_argument("--data", required=True, help="distill_data.py jsonl")
    ap.add_argument("--out", required=True, help="output dir (ckpt.pt, log)")
    ap.add_argument("--W", type=int, default=8, help="mask window length")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--min-lr-frac", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--ar-w", type=float, default=0.5)
    ap.add_argument("--kl-w", type=float, default=1.0)
    ap.add_argument("--greedy-ar", choices=("all", "prompt"), default="all",
                    help="AR CE of the greedy samples: every position, or only the real prompt tokens")
    ap.add_argument("--mask-conf", type=float, default=0.0,
                    help="count a mask slot only if the teacher's p(greedy token) >= this here and before it in "
                         "its window (0 = every slot)")
    ap.add_argument("--real-batch", type=int, default=0, help="real-text sequences per step (0 = none)")
    ap.add_argument("--real-len", type=int, default=192)
    ap.add_argument("--real-pool", type=int, default=8000, help="real-text training sequences to cut")
    ap.add_argument("--real-ar-w", type=float, default=1.0)
    ap.add_argument("--real-kl-w", type=float, default=5.0)
    ap.add_argument("--real-roots", default="/usr/lib/python3,/usr/lib/python3.11")
    ap.add_argument("--minutes", type=float, default=30.0, help="wall budget for the training loop")
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--val-samples", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    stop = {"flag": False}

    def on_term(signum, frame):
        stop["flag"] = True
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    student, kv, cfg = load_gguf_model(a.gguf)
    teacher, _, _ = load_gguf_model(a.gguf)
    if a.init_ckpt:
        student.load_state_dict(torch.load(a.init_ckpt, map_location="cpu")["model"])
        log(f"[ft] student starts from {a.init_ckpt}")
    for p in teacher.parameters():
        p.requires_grad_(False)
    tok = gguf_tokenizer(kv)
    os.makedirs(a.out, exist_ok=True)
    tok.save(os.path.join(a.out, "tokenizer.json"))   # for export_gguf.py
    bos, mask_id = kv["tokenizer.ggml.bos_token_id"], kv["tokenizer.ggml.mask_token_id"]
    rows = [json.loads(l) for l in open(a.data) if l.strip()]
    P = len(rows[0]["prompt_tokens"])
    N = len(rows[0]["tokens"])
    rows = [r for r in rows if len(r["prompt_tokens"]) == P and len(r["tokens"]) == N]
    X = torch.tensor([r["prompt_tokens"] + r["tokens"] for r in rows])  # [n][T]
    T = P + N
    rng = random.Random(a.seed)
    idx = list(range(len(X)))
    rng.shuffle(idx)
    val_idx, tr_idx = idx[:a.val_samples], idx[a.val_samples:]
    W = a.W
    n_win = (N - W + 1) // W     # windows fit for any offset o < W
    log(f"[ft] {len(rows)} samples (train {len(tr_idx)}, val {len(val_idx)}), P={P} N={N} W={W} n_win={n_win} "
        f"train tokens/sample x0={T} xt={n_win*W}")
    bench = []
    for name in ("prompts_code.txt", "prompts_lowent.txt"):
        p = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench", "wedlm", name)
        if os.path.exists(p):
            bench += [json.loads(l) for l in open(p) if l.strip()]
    real = real_text_batches(tok, bos, 32, 256, 99, bench)
    log(f"[ft] held-out real text: {tuple(real.shape)} from dist-packages test files")
    rtrain = rdev = None
    if a.real_batch > 0:
        rfiles = list_files(a.real_roots.split(","))
        random.Random(a.seed + 1).shuffle(rfiles)
        n_dev_files = max(1, len(rfiles) // 20)
        rdev = real_text_pool(tok, bos, rfiles[:n_dev_files], 32, 256, a.seed + 2, bench, per_file=1)
        rtrain = real_text_pool(tok, bos, rfiles[n_dev_files:], a.real_pool, a.real_len, a.seed + 3, bench)
        log(f"[ft] real-text training pool {tuple(rtrain.shape)} from {len(rfiles) - n_dev_files} non-test files, "
            f"dev {tuple(rdev.shape)} from {n_dev_files} other files")
    masks = {o: build_mask(T, P, W, n_win, o) for o in range(W)}

    def forward(model, xb, o):
        M, xpos = masks[o]
        B = xb.shape[0]
        ids = torch.cat([xb, torch.full((B, n_win * W), mask_id, dtype=torch.long)], 1)
        pos = torch.cat([torch.arange(T), xpos])
        h = model.hidden(ids, pos, M)
        tgt_pos = xpos  # target token of each mask slot = x[pos]
        return model.logits(h[:, :T]).float(), model.logits(h[:, T:]).float(), xb[:, tgt_pos]

    def kl_to_teacher(lg, xb):
        with torch.no_grad():
            t_lg = teacher(xb).float()
        V = lg.shape[-1]
        kl = F.kl_div(F.log_softmax(lg, -1).reshape(-1, V), F.log_softmax(t_lg, -1).reshape(-1, V),
                      log_target=True, reduction="batchmean")
        return kl, t_lg

    def losses(xb, o):
        ar_lg, m_lg, m_tgt = forward(student, xb, o)
        V = ar_lg.shape[-1]
        n_ar = P - 1 if a.greedy_ar == "prompt" else T - 1     # next-token targets x[1..n_ar]
        ar_ce = F.cross_entropy(ar_lg[:, :n_ar].reshape(-1, V), xb[:, 1:n_ar + 1].reshape(-1))
        kl, t_lg = kl_to_teacher(ar_lg, xb)
        m_ce = F.cross_entropy(m_lg.reshape(-1, V), m_tgt.reshape(-1), reduction="none").view(m_tgt.shape)
        if a.mask_conf > 0:
            _, xpos = masks[o]
            # teacher p(x[t] | x[<t]) at each target position t = xpos (>= P >= 1)
            tp = F.softmax(t_lg[:, xpos - 1], -1).gather(-1, m_tgt.unsqueeze(-1)).squeeze(-1)   # [B][n_win*W]
            ok = (tp >= a.mask_conf).view(-1, n_win, W).float().cumprod(-1).view_as(tp)         # chain per window
            mlm = (m_ce * ok).sum() / ok.sum().clamp(min=1.0)
            frac = ok.mean().item()
        else:
            mlm, frac = m_ce.mean(), 1.0
        return ar_ce, mlm, kl, frac

    def real_losses(rb):
        lg = student(rb).float()
        V = lg.shape[-1]
        ce = F.cross_entropy(lg[:, :-1].reshape(-1, V), rb[:, 1:].reshape(-1))
        kl, _ = kl_to_teacher(lg, rb)
        return ce, kl

    def evaluate(model_is_teacher=False):
        mdl = teacher if model_is_teacher else student
        mdl.eval()
        res = {}
        with torch.no_grad():
            xv = X[val_idx]
            acc = np.zeros(W)
            cnt = 0
            agree = 0.0
            for o in (0,):
                M, xpos = masks[o]
                ids = torch.cat([xv, torch.full((len(xv), n_win * W), mask_id, dtype=torch.long)], 1)
                h = mdl.hidden(ids, torch.cat([torch.arange(T), xpos]), M)
                m_pred = mdl.logits(h[:, T:]).argmax(-1)
                ok = (m_pred == xv[:, xpos]).float().view(len(xv), n_win, W)
                acc += ok.mean((0, 1)).numpy()
                cnt += 1
                ar_pred = mdl.logits(h[:, P - 1:T - 1]).argmax(-1)
                agree += (ar_pred == xv[:, P:T]).float().mean().item()
            res["mask_acc_by_dist"] = [round(float(v), 3) for v in acc / cnt]
            res["ar_agree_greedy"] = agree / cnt
            lg = mdl(real).float()
            res["real_nll"] = F.cross_entropy(lg[:, :-1].reshape(-1, lg.shape[-1]), real[:, 1:].reshape(-1)).item()
            if rdev is not None:
                lg = mdl(rdev).float()
                res["dev_nll"] = F.cross_entropy(lg[:, :-1].reshape(-1, lg.shape[-1]), rdev[:, 1:].reshape(-1)).item()
        mdl.train()
        return res

    ev0 = evaluate(model_is_teacher=True)
    log(f"[eval] teacher: {json.dumps(ev0)}")
    opt = torch.optim.AdamW([p for p in student.parameters()], lr=a.lr, betas=(0.9, 0.95), weight_decay=0.0)
    student.train()
    budget = a.minutes * 60
    t0 = time.time()
    step, tok_seen, hist = 0, 0, [dict(step=0, **ev0)]
    logf = open(os.path.join(a.out, "ft_log.jsonl"), "w")
    order, rorder = [], []
    while not stop["flag"] and time.time() - t0 < budget:
        el = time.time() - t0
        p = min(1.0, el / budget)
        lr = a.lr * min(1.0, (step + 1) / a.warmup) * (a.min_lr_frac + (1 - a.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * p)))
        for g in opt.param_groups:
            g["lr"] = lr
        if len(order) < a.batch:
            order = tr_idx[:]
            rng.shuffle(order)
        bi, order = order[:a.batch], order[a.batch:]
        o = rng.randrange(W)
        ar_ce, mlm, kl, frac = losses(X[bi], o)
        loss = mlm + a.ar_w * ar_ce + a.kl_w * kl
        r_ce = r_kl = torch.zeros(())
        if rtrain is not None:
            if len(rorder) < a.real_batch:
                rorder = list(range(len(rtrain)))
                rng.shuffle(rorder)
            rbi, rorder = rorder[:a.real_batch], rorder[a.real_batch:]
            r_ce, r_kl = real_losses(rtrain[rbi])
            loss = loss + a.real_ar_w * r_ce + a.real_kl_w * r_kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        step += 1
        tok_seen += a.batch * (T + n_win * W) + (a.real_batch * a.real_len if rtrain is not None else 0)
        if step % 10 == 0 or step == 1:
            rec = dict(step=step, loss=loss.item(), mlm=mlm.item(), ar=ar_ce.item(), kl=kl.item(), lr=lr,
                       gn=float(gn), t=time.time() - t0, mask_frac=frac, real_ce=r_ce.item(), real_kl=r_kl.item())
            logf.write(json.dumps(rec) + "\n")
            logf.flush()
            log(f"[ft] step {step} loss {rec['loss']:.4f} mlm {rec['mlm']:.4f} (slots {frac:.2f}) ar {rec['ar']:.4f} "
                f"kl {rec['kl']:.4f} real ce {rec['real_ce']:.4f} kl {rec['real_kl']:.4f} "
                f"lr {lr:.2e} gn {rec['gn']:.2f} t={rec['t']:.0f}s")
        if step % a.eval_every == 0:
            ev = evaluate()
            hist.append(dict(step=step, t=time.time() - t0, **ev))
            logf.write(json.dumps(hist[-1]) + "\n")
            log(f"[eval] step {step}: {json.dumps(ev)}")
            save(student, cfg, kv, a, hist, step, tok_seen, t0)
    ev = evaluate()
    hist.append(dict(step=step, t=time.time() - t0, final=True, **ev))
    logf.write(json.dumps(hist[-1]) + "\n")
    log(f"[eval] final step {step}: {json.dumps(ev)}  tokens {tok_seen} (x0+xt) in {time.time()-t0:.0f}s")
    save(student, cfg, kv, a, hist, step, tok_seen, t0)


def save(student, cfg, kv, a, hist, step, tok_seen, t0):
    ck = dict(config=cfg.to_dict(), model={k: v.detach().float().cpu() for k, v in student.state_dict().items()},
              train_args=vars(a), meta=dict(vocab_size=cfg.vocab_size, eos_id=kv["tokenizer.ggml.eos_token_id"],
                                            mask_id=kv["tokenizer.ggml.mask_token_id"]),
              final=dict(step=step, tokens_seen=tok_seen, train_seconds=time.time() - t0), history=hist,
              torch_version=torch.__version__, device="cpu")
    torch.save(ck, os.path.join(a.out, "ckpt.pt"))
    torch.save(ck, os.path.join(a.out, f"ckpt_step{step}.pt"))


if __name__ == "__main__":
    main()
