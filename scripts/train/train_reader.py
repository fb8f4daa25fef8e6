#!/usr/bin/env python3
"""Trains a fusion-in-decoder reader on the JSONL examples `npm run train:data` writes.

Exactly as the product's reader runs: every passage is encoded alone with the question, in the input format and
token ids the server uses (the examples carry them, so nothing here re-implements the reader's input), the encoder
states of all passages are concatenated into one memory, and the decoder is trained with teacher-forced
cross-entropy on the answer. A curriculum can start from fewer passages per question (the gold one among hard
negatives from the same retrieval) and grow to all k.

The output folder holds checkpoint.pt (resumed from automatically), curve.jsonl (loss and validation EM/F1/
citation@1 against minutes), and model/: config.json, model.safetensors in Hugging Face's names, reference.json
(logits of a few fixed inputs, for the export's parity test) and training.json (the command and the figures).
`npm run reader:export -- --checkpoint OUT/model --out DIR` turns model/ into ONNX graphs in the hub layout.
"""
import argparse
import json
import math
import os
import random
import re
import string
import sys
import time
from collections import Counter

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import read_checkpoint_folder, write_safetensors  # noqa: E402
from t5 import T5, T5Config  # noqa: E402

# Copies of shared.weight Hugging Face checkpoints carry; the model reads shared.weight itself.
TIED_COPIES = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--train", required=True, help="JSONL examples from `npm run train:data -- examples` (its .meta.json beside it)")
    p.add_argument("--valid", required=True, help="JSONL examples for validation")
    p.add_argument("--out", required=True, help="output folder (resumed from when it holds checkpoint.pt)")
    init = p.add_mutually_exclusive_group(required=True)
    init.add_argument("--config", help="T5 v1.1 config.json to train from scratch")
    init.add_argument("--init-from", help="Hugging Face T5 checkpoint folder (config.json + safetensors) to fine-tune")
    p.add_argument("--copy-init", action="store_true", help="from scratch: start with a copy circuit (T5.init_copy_circuit)")
    p.add_argument("--match-init", action="store_true",
                   help="from scratch: start one encoder head as a same-token matcher looking back (T5.init_match_head)")
    p.add_argument("--steps", type=int, default=2000, help="optimizer steps (the schedule decays to 0 at this step)")
    p.add_argument("--batch-size", type=int, default=16, help="questions per step")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=100, help="linear warm-up steps")
    p.add_argument("--schedule", choices=["linear", "cosine", "constant"], default="linear", help="decay after warm-up")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--clip", type=float, default=1.0, help="gradient-norm clip")
    p.add_argument("--attention-loss", type=float, default=0.0,
                   help="weight of the citation loss: -log of each decoder layer's cross-attention mass (mean over heads)"
                        " on the gold passage, at every answer token; it trains finding the passage directly")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--curriculum", default="",
                   help="passages per question by step, 'n:until,...' (e.g. '1:200,3:500'); all k after the last")
    p.add_argument("--span-loss", type=float, default=0.0,
                   help="weight of the span loss: -log of the last decoder layer's cross-attention (mean over heads) on the"
                        " gold passage's copy of each answer token; with the copy circuit, attending there predicts it")
    p.add_argument("--crop", type=int, default=0,
                   help="train on windows of this many context tokens (0: whole passages): the gold passage's window holds"
                        " the answer at a random place; the question and title are kept, so the input keeps its format")
    p.add_argument("--crop-until", type=int, default=0, help="crop only before this step (0: at every step)")
    p.add_argument("--eval-every", type=int, default=250, help="validate and checkpoint every N steps")
    p.add_argument("--eval-limit", type=int, default=300, help="validation questions per evaluation")
    p.add_argument("--max-minutes", type=float, default=0, help="stop training after this many minutes (0: no limit)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device (cuda on a GPU machine)")
    p.add_argument("--save-dtype", choices=["float16", "float32", "bfloat16"], default="float16",
                   help="dtype of model.safetensors; reference.json is computed from the weights as saved")
    p.add_argument("--tokenizer", help="tokenizer.json for decoding answers (default: the one the examples' meta names)")
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint in --out")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------------------------- data

def read_meta(path):
    meta_path = f"{path}.meta.json"
    if not os.path.exists(meta_path):
        raise FileNotFoundError(f"{meta_path}: missing (npm run train:data writes it beside the examples)")
    with open(meta_path) as f:
        meta = json.load(f)
    if meta.get("format") != "fid-examples-1":
        raise ValueError(f"{meta_path}: format {meta.get('format')!r}, expected 'fid-examples-1'")
    return meta


def read_examples(path):
    examples = []
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                e = json.loads(line)
                examples.append({
                    "id": e["id"], "answers": e["answers"], "target": e["target"],
                    "passages": [p["input_ids"] for p in e["passages"]],
                    "gold": [bool(p["gold"]) for p in e["passages"]],
                })
            except (KeyError, TypeError, json.JSONDecodeError) as err:
                raise ValueError(f"{path}:{line_no}: not a training example ({err})") from err
            if not examples[-1]["passages"]:
                raise ValueError(f"{path}:{line_no}: example {e['id']} has no passages")
    if not examples:
        raise ValueError(f"{path}: no examples")
    return examples


def parse_curriculum(spec):
    stages = []
    for part in filter(None, (s.strip() for s in spec.split(","))):
        m = re.fullmatch(r"(\d+):(\d+)", part)
        if not m:
            raise ValueError(f"--curriculum: {part!r} is not 'passages:until_step'")
        stages.append((int(m.group(1)), int(m.group(2))))
    return stages


def passages_at(step, stages, k):
    for n, until in stages:
        if step < until:
            return min(n, k)
    return k


def choose_passages(example, n, rng):
    """The gold passage among n-1 of the question's other retrieved passages (hard negatives), in random order."""
    idx = list(range(len(example["passages"])))
    if n >= len(idx):
        return idx
    gold = [i for i in idx if example["gold"][i]]
    first = [rng.choice(gold)] if gold else []
    rest = [i for i in idx if i not in first]
    chosen = first + rng.sample(rest, n - len(first))
    rng.shuffle(chosen)
    return chosen


def find(seq, sub, start=0):
    """First index >= start where sub occurs in seq, or -1."""
    n = len(sub)
    for i in range(start, len(seq) - n + 1):
        if seq[i:i + n] == sub:
            return i
    return -1


def crop_passage(ids, answer, size, markers, rng, gold):
    """The passage's encoder input with its context cut to a window of `size` tokens: `question: … title: … context:`
    and the final EOS are kept, so the input has the server's format (src/reader/fusion.ts), only a shorter text. The
    gold passage's window holds the answer, at a random place; a gold passage whose tokens do not contain the answer's
    (tokenised apart, a word can split differently) and a passage too short are returned whole."""
    title, context = markers
    t = find(ids, title)
    c = find(ids, context, t + len(title)) if t >= 0 else -1
    if c < 0:
        return ids
    head, body, eos = ids[:c + len(context)], ids[c + len(context):-1], ids[-1:]
    if len(body) <= size:
        return ids
    a = find(body, answer) if gold and answer else -1
    if a >= 0 and len(answer) <= size:
        lo, hi = max(0, a + len(answer) - size), min(a, len(body) - size)
    elif gold:
        return ids
    else:
        lo, hi = 0, len(body) - size
    start = rng.randint(lo, hi)
    return head + body[start:start + size] + eos


def gold_tokens(batch, picks, length):
    """[b, n*length] 1 where a memory position belongs to a gold passage (the citation loss's target)."""
    n = max(len(p) for p in picks)
    gold = torch.zeros((len(batch), n, length))
    for b, (e, pick) in enumerate(zip(batch, picks)):
        for j, i in enumerate(pick):
            if e["gold"][i]:
                gold[b, j] = 1.0
    return gold.view(len(batch), n * length)


def span_positions(batch, picks, length):
    """[b, t] memory position of each answer token's copy in the first picked gold passage holding the answer's tokens,
    -1 where there is none (the EOS step, answers tokenised apart differently, gold passage not picked)."""
    t = max(len(e["target"]) for e in batch)
    pos = torch.full((len(batch), t), -1, dtype=torch.long)
    for b, (e, pick) in enumerate(zip(batch, picks)):
        answer = e["target"][:-1]
        for j, i in enumerate(pick):
            if not e["gold"][i] or not answer:
                continue
            a = find(e["passages"][i], answer)
            if a >= 0:
                pos[b, :len(answer)] = torch.arange(len(answer)) + j * length + a
                break
    return pos


def span_loss(weights, positions):
    """Mean over answer tokens of -log(the last decoder layer's cross-attention, mean over heads, on the token's copy)."""
    live = positions >= 0
    if not live.any():
        return torch.zeros(())
    mass = weights[-1].mean(1)  # [b, t, m]
    at = mass.gather(-1, positions.clamp(min=0)[..., None])[..., 0]
    return -torch.log(at.clamp(min=1e-6))[live].mean()


def citation_loss(weights, gold, labels):
    """Mean over decoder layers and answer tokens of -log(cross-attention mass on the gold passages), the mass taken
    as the mean over heads, as citations read it. Questions whose gold passage is not among the picks are skipped."""
    has_gold = gold.sum(-1) > 0
    live = (labels != -100) & has_gold[:, None]
    if not live.any():
        return torch.zeros(())
    total = 0.0
    for w in weights:  # [b, h, t, m]
        mass = (w * gold[:, None, None, :]).sum(-1).mean(1)  # [b, t]
        total = total - torch.log(mass.clamp(min=1e-6))[live].mean()
    return total / len(weights)


def collate(batch, picks, pad_id, start_id):
    n = max(len(p) for p in picks)
    length = max(len(batch[b]["passages"][i]) for b in range(len(batch)) for i in picks[b])
    ids = torch.full((len(batch), n, length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), n, length), dtype=torch.long)
    for b, (e, pick) in enumerate(zip(batch, picks)):
        for j, i in enumerate(pick):
            p = e["passages"][i]
            ids[b, j, :len(p)] = torch.tensor(p)
            mask[b, j, :len(p)] = 1
    t = max(len(e["target"]) for e in batch)
    labels = torch.full((len(batch), t), -100, dtype=torch.long)
    dec = torch.full((len(batch), t), pad_id, dtype=torch.long)
    for b, e in enumerate(batch):
        y = torch.tensor(e["target"])
        labels[b, :len(y)] = y
        dec[b, 0] = start_id
        dec[b, 1:len(y)] = y[:-1]
    return ids, mask, dec, labels


# ---------------------------------------------------------------------------------------------------------- metrics

def normalize_answer(s):
    """SQuAD's official normalisation: lower case, no punctuation, no articles, single spaces."""
    s = "".join(ch for ch in s.lower() if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def f1_score(prediction, truth):
    p, t = normalize_answer(prediction).split(), normalize_answer(truth).split()
    common = sum((Counter(p) & Counter(t)).values())
    if not p or not t:
        return float(p == t)
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(t)
    return 2 * precision * recall / (precision + recall)


class PieceDecoder:
    """Decodes T5 ids with the SentencePiece vocabulary in tokenizer.json (what the server's tokenizer does)."""

    def __init__(self, tokenizer_json, special_ids):
        with open(tokenizer_json) as f:
            tok = json.load(f)
        self.pieces = [p[0] for p in tok["model"]["vocab"]]
        for added in tok.get("added_tokens", []):
            if added["id"] >= len(self.pieces):
                self.pieces.extend([""] * (added["id"] + 1 - len(self.pieces)))
            self.pieces[added["id"]] = added["content"]
        self.special = set(special_ids) | {a["id"] for a in tok.get("added_tokens", []) if a.get("special")}

    def encode_words(self, text):
        """Ids of a marker such as 'context:' as SentencePiece writes it inside the input: the word piece with its leading
        space, then the colon (as tokenizer.json's vocabulary holds them)."""
        word, colon = text.rstrip(":"), ":"
        ids = [self.pieces.index("\u2581" + word), self.pieces.index(colon)]
        return ids

    def decode(self, ids):
        text = "".join(self.pieces[i] for i in ids if i not in self.special and i < len(self.pieces))
        return text.replace("\u2581", " ").strip()


@torch.no_grad()
def greedy(model, ids, mask, start_id, eos_id, max_new):
    """Greedy answers and each question's cross-attention mass per passage (mean over layers, heads, tokens)."""
    b, n, length = ids.shape
    memory, mmask = model.fid_memory(ids, mask)
    dec = torch.full((b, 1), start_id, dtype=torch.long, device=ids.device)
    done = torch.zeros(b, dtype=torch.bool, device=ids.device)
    mass = torch.zeros(b, n, device=ids.device)
    steps = torch.zeros(b, device=ids.device)
    for _ in range(max_new):
        logits, weights = model.decode(dec, memory, mmask, need_weights=True)
        nxt = logits[:, -1].argmax(-1)
        att = torch.stack([w[:, :, -1] for w in weights]).mean(dim=(0, 2))  # [b, memory]
        live = (~done).float()
        mass += att.view(b, n, length).sum(-1) * live[:, None]
        steps += live
        nxt = torch.where(done, torch.full_like(nxt, eos_id), nxt)
        dec = torch.cat([dec, nxt[:, None]], 1)
        done |= nxt == eos_id
        if done.all():
            break
    answers = []
    for row in dec[:, 1:].tolist():
        answers.append(row[:row.index(eos_id)] if eos_id in row else row)
    return answers, (mass / steps.clamp(min=1)[:, None]).cpu()


def evaluate(model, examples, meta, decoder, batch_size=8, device="cpu"):
    model.eval()
    em = f1 = cited = 0.0
    max_new = min(48, max(len(e["target"]) for e in examples) + 4)
    for s in range(0, len(examples), batch_size):
        batch = examples[s:s + batch_size]
        picks = [list(range(len(e["passages"]))) for e in batch]
        ids, mask, _, _ = collate(batch, picks, meta["pad_token_id"], meta["decoder_start_token_id"])
        answers, mass = greedy(model, ids.to(device), mask.to(device), meta["decoder_start_token_id"], meta["eos_token_id"], max_new)
        for e, a, m in zip(batch, answers, mass):
            if decoder:
                text = decoder.decode(a)
                em += max(float(normalize_answer(text) == normalize_answer(t)) for t in e["answers"])
                f1 += max(f1_score(text, t) for t in e["answers"])
            else:
                hit = float(a + [meta["eos_token_id"]] == e["target"])
                em += hit
                f1 += hit
            top = int(m[:len(e["passages"])].argmax())
            cited += float(e["gold"][top])
    model.train()
    n = len(examples)
    return {"em": em / n, "f1": f1 / n, "citation_at_1": cited / n}


# ---------------------------------------------------------------------------------------------------------- model io

def load_model(args):
    if args.config:
        with open(args.config) as f:
            cfg = json.load(f)
        model = T5(T5Config(cfg))
        if args.copy_init:
            model.init_copy_circuit()
        if args.match_init:
            model.init_match_head()
        return model, cfg
    with open(os.path.join(args.init_from, "config.json")) as f:
        cfg = json.load(f)
    model = T5(T5Config(cfg))
    load_hf_weights(model, read_checkpoint_folder(args.init_from), args.init_from)
    return model, cfg


def load_hf_weights(model, tensors, source):
    """Loads a Hugging Face T5 state dict; names and shapes must match the config exactly."""
    own = model.state_dict()
    tensors = {k: v for k, v in tensors.items() if k not in TIED_COPIES}
    missing = [k for k in own if k not in tensors]
    unexpected = [k for k in tensors if k not in own]
    if missing or unexpected:
        raise ValueError(f"{source}: not this config's T5 (missing {missing[:4]}, unexpected {unexpected[:4]})")
    for k, v in tensors.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise ValueError(f"{source}: {k} has shape {list(v.shape)}, the config needs {list(own[k].shape)}")
    model.load_state_dict({k: v.float() for k, v in tensors.items()})


def hub_config(cfg, meta):
    out = dict(cfg)
    out.update({
        "architectures": ["T5ForConditionalGeneration"], "model_type": "t5", "is_encoder_decoder": True,
        "feed_forward_proj": "gated-gelu", "dense_act_fn": "gelu_new", "is_gated_act": True,
        "pad_token_id": meta["pad_token_id"], "eos_token_id": meta["eos_token_id"],
        "decoder_start_token_id": meta["decoder_start_token_id"],
        "num_decoder_layers": cfg.get("num_decoder_layers", cfg["num_layers"]),
        "tie_word_embeddings": cfg.get("tie_word_embeddings", True),
    })
    return out


@torch.no_grad()
def reference_cases(model, examples, meta, count=3, top=8):
    """Teacher-forced logits of a few validation inputs, for the exported graphs' parity test."""
    model.eval()
    cases = []
    for e in examples[:count]:
        ids, mask, dec, _ = collate([e], [list(range(len(e["passages"])))], meta["pad_token_id"], meta["decoder_start_token_id"])
        memory, mmask = model.fid_memory(ids, mask)
        logits = model.decode(dec, memory, mmask)[0][0]
        vocab = sorted(set(logits.topk(top, dim=-1).indices.flatten().tolist()) | set(e["target"]))
        rows = logits[:, vocab]
        cases.append({
            "id": e["id"],
            "encoder_input_ids": e["passages"],
            "decoder_input_ids": dec[0].tolist(),
            "vocab_ids": vocab,
            "logits": [[round(v, 5) for v in r] for r in rows.tolist()],
            "argmax": [vocab[i] for i in rows.argmax(-1).tolist()],
        })
    model.train()
    return cases


def export_model(model, cfg, meta, args, valid, summary):
    folder = os.path.join(args.out, "model")
    os.makedirs(folder, exist_ok=True)
    dtype = getattr(torch, args.save_dtype)
    state = {k: v.detach().cpu().to(dtype) for k, v in model.state_dict().items()}
    write_safetensors(os.path.join(folder, "model.safetensors"), state, {"format": "pt"})
    # The reference comes from the weights as saved, so it checks the export and not the rounding to fp16.
    saved = T5(T5Config(cfg))
    saved.load_state_dict({k: v.float() for k, v in state.items()})
    write_json(os.path.join(folder, "config.json"), hub_config(cfg, meta))
    write_json(os.path.join(folder, "reference.json"), {"cases": reference_cases(saved, valid, meta)})
    write_json(os.path.join(folder, "training.json"), summary)
    return folder


def write_json(path, value):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------------------- training

def lr_at(step, args):
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    if args.schedule == "constant":
        return args.lr
    progress = min(1.0, (step - args.warmup) / max(1, args.steps - args.warmup))
    if args.schedule == "cosine":
        return args.lr * 0.5 * (1 + math.cos(math.pi * progress))
    return args.lr * (1 - progress)


def make_optimizer(model, args):
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "relative_attention_bias" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "relative_attention_bias" not in n)]
    return torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay}, {"params": rest, "weight_decay": 0.0}],
                             lr=args.lr, betas=(0.9, 0.999), eps=1e-8)


def train(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    meta = read_meta(args.train)
    train_set, valid_set = read_examples(args.train), read_examples(args.valid)[:args.eval_limit]
    model, cfg = load_model(args)
    model.to(args.device)
    top_id = max(max(max(p) for p in e["passages"]) for e in train_set)
    if top_id >= model.config.vocab_size:
        raise ValueError(f"{args.train}: token id {top_id} is outside the config's vocab_size {model.config.vocab_size}")
    tokenizer = args.tokenizer or meta.get("tokenizer")
    decoder = PieceDecoder(tokenizer, [meta["pad_token_id"], meta["eos_token_id"]]) if tokenizer and os.path.exists(tokenizer) else None
    stages = parse_curriculum(args.curriculum)
    if args.crop and decoder is None:
        raise ValueError("--crop needs the tokenizer (--tokenizer) to find the 'title:' and 'context:' markers")
    markers = (decoder.encode_words("title:"), decoder.encode_words("context:")) if args.crop else None
    k = max(len(e["passages"]) for e in train_set)
    optimizer = make_optimizer(model, args)
    os.makedirs(args.out, exist_ok=True)
    ckpt_path, curve_path = os.path.join(args.out, "checkpoint.pt"), os.path.join(args.out, "curve.jsonl")
    step, elapsed, rng = 0, 0.0, random.Random(args.seed)
    if os.path.exists(ckpt_path) and not args.restart:
        ckpt = torch.load(ckpt_path, map_location=args.device)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        step, elapsed = ckpt["step"], ckpt["elapsed"]
        rng.setstate(ckpt["rng"])
        torch.set_rng_state(ckpt["torch_rng"].cpu())
        print(f"resumed from {ckpt_path} at step {step} ({elapsed / 60:.1f} min)", flush=True)
    elif os.path.exists(curve_path):
        os.remove(curve_path)
    params = sum(p.numel() for p in model.parameters())
    print(f"{params / 1e6:.2f}M parameters, {len(train_set)} training examples, k={k}, {args.device}, {args.threads} threads", flush=True)

    def save():
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step, "elapsed": elapsed,
                    "rng": rng.getstate(), "torch_rng": torch.get_rng_state(), "config": cfg}, f"{ckpt_path}.tmp")
        os.replace(f"{ckpt_path}.tmp", ckpt_path)

    def log(record):
        with open(curve_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        print(json.dumps(record), flush=True)

    order = []
    losses, att_losses, span_losses = [], [], []
    model.train()
    started = time.time() - elapsed
    metrics = {}
    while step < args.steps:
        if args.max_minutes and (time.time() - started) / 60 >= args.max_minutes:
            print(f"stopping at step {step}: --max-minutes {args.max_minutes} reached", flush=True)
            break
        if len(order) < args.batch_size:
            extra = list(range(len(train_set)))
            rng.shuffle(extra)
            order += extra
        batch = [train_set[i] for i in order[:args.batch_size]]
        order = order[args.batch_size:]
        n = passages_at(step, stages, k)
        picks = [choose_passages(e, n, rng) for e in batch]
        if args.crop and (not args.crop_until or step < args.crop_until):
            batch = [dict(e, passages=[crop_passage(p, e["target"][:-1], args.crop, markers, rng, e["gold"][i]) if i in pick else p
                                       for i, p in enumerate(e["passages"])]) for e, pick in zip(batch, picks)]
        ids, mask, dec, labels = (t.to(args.device) for t in collate(batch, picks, meta["pad_token_id"], meta["decoder_start_token_id"]))
        for g in optimizer.param_groups:
            g["lr"] = lr_at(step, args)
        memory, mmask = model.fid_memory(ids, mask)
        logits, weights = model.decode(dec, memory, mmask, need_weights=args.attention_loss > 0 or args.span_loss > 0)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
        losses.append(loss.item())
        if args.attention_loss > 0:
            att = citation_loss(weights, gold_tokens(batch, picks, ids.shape[2]).to(args.device), labels)
            att_losses.append(float(att))
            loss = loss + args.attention_loss * att
        if args.span_loss > 0:
            spans = span_loss(weights, span_positions(batch, picks, ids.shape[2]).to(args.device))
            span_losses.append(float(spans))
            loss = loss + args.span_loss * spans
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        optimizer.step()
        step += 1
        elapsed = time.time() - started
        if step % args.eval_every == 0 or step == args.steps:
            metrics = evaluate(model, valid_set, meta, decoder, device=args.device)
            elapsed = time.time() - started
            log({"step": step, "minutes": round(elapsed / 60, 2), "passages": n, "lr": lr_at(step - 1, args),
                 "loss": round(sum(losses) / len(losses), 4),
                 **({"citation_loss": round(sum(att_losses) / len(att_losses), 4)} if att_losses else {}),
                 **({"span_loss": round(sum(span_losses) / len(span_losses), 4)} if span_losses else {}),
                 **{f"valid_{k_}": round(v, 4) for k_, v in metrics.items()}})
            losses, att_losses, span_losses = [], [], []
            save()
    if not metrics or step % args.eval_every:
        metrics = evaluate(model, valid_set, meta, decoder, device=args.device)
        log({"step": step, "minutes": round(elapsed / 60, 2), "passages": passages_at(step - 1, stages, k),
             "loss": round(sum(losses) / max(1, len(losses)), 4), **{f"valid_{k_}": round(v, 4) for k_, v in metrics.items()}})
        save()
    summary = {
        "command": "scripts/train/train_reader.py " + " ".join(sys.argv[1:]) if sys.argv[1:] else None,
        "arguments": {k_: v for k_, v in vars(args).items() if k_ not in ("train", "valid", "out", "tokenizer")},
        "parameters": params, "steps": step, "minutes": round(elapsed / 60, 2), "threads": args.threads,
        "torch": torch.__version__, "train_examples": len(train_set), "valid_examples": len(valid_set),
        "data": {k_: meta[k_] for k_ in ("readerModel", "k", "retrievalMode", "max_input_tokens") if k_ in meta},
        "valid": {k_: round(v, 4) for k_, v in metrics.items()},
    }
    folder = export_model(model, cfg, meta, args, valid_set, summary)
    print(f"wrote {folder}: valid EM {metrics['em']:.3f}, F1 {metrics['f1']:.3f}, citation@1 {metrics['citation_at_1']:.3f}")
    return summary


if __name__ == "__main__":
    try:
        train(parse_args())
    except (ValueError, FileNotFoundError) as err:
        print(f"train_reader: {err}", file=sys.stderr)
        sys.exit(2)
