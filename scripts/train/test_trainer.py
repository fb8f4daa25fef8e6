"""Unit tests of the trainer: `/usr/bin/python3 -m unittest discover -s scripts/train` (npm test runs them when
PyTorch is installed)."""
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import unittest

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from safetensors_io import read_checkpoint_folder, read_safetensors, write_safetensors  # noqa: E402
from t5 import T5, T5Config, relative_position_bucket  # noqa: E402
import train_reader  # noqa: E402

SMALL = {"vocab_size": 64, "d_model": 16, "d_kv": 4, "d_ff": 24, "num_layers": 2, "num_decoder_layers": 1,
         "num_heads": 2, "relative_attention_num_buckets": 8, "relative_attention_max_distance": 16,
         "layer_norm_epsilon": 1e-6, "feed_forward_proj": "gated-gelu", "tie_word_embeddings": False}
META = {"format": "fid-examples-1", "pad_token_id": 0, "eos_token_id": 1, "decoder_start_token_id": 0,
        "max_input_tokens": 32, "k": 3, "tokenizer": ""}


def hf_checkpoint(folder, cfg, seed=3, dtype=torch.float16):
    """A checkpoint as Hugging Face writes one: config.json, model.safetensors with the embed_tokens copies."""
    torch.manual_seed(seed)
    model = T5(T5Config(cfg))
    state = {k: v.to(dtype) for k, v in model.state_dict().items()}
    state["encoder.embed_tokens.weight"] = state["shared.weight"].clone()
    state["decoder.embed_tokens.weight"] = state["shared.weight"].clone()
    os.makedirs(folder, exist_ok=True)
    write_safetensors(os.path.join(folder, "model.safetensors"), state, {"format": "pt"})
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f)
    return state


def copy_task(path, count, k, seed):
    """Each question's answer is the token after marker 5 in the one passage that holds it."""
    rng = random.Random(seed)
    with open(path, "w") as f:
        for i in range(count):
            answer = rng.randrange(10, 64)
            gold = rng.randrange(k)
            passages = []
            for j in range(k):
                ids = [rng.randrange(10, 64) for _ in range(rng.randrange(4, 9))]
                if j == gold:
                    ids[rng.randrange(len(ids) - 1)] = 5
                    ids[ids.index(5) + 1] = answer
                passages.append({"id": f"p{j}", "input_ids": ids + [1], "gold": j == gold})
            f.write(json.dumps({"id": f"q{i}", "answers": [str(answer)], "target": [answer, 1], "passages": passages}) + "\n")
    with open(f"{path}.meta.json", "w") as f:
        json.dump({**META, "k": k}, f)


class BucketTest(unittest.TestCase):
    def test_hugging_face_buckets(self):
        rel = torch.tensor([0, 1, -1, -20, 200])
        self.assertEqual(relative_position_bucket(rel, True, 32, 128).tolist(), [0, 17, 1, 10, 31])
        self.assertEqual(relative_position_bucket(rel, False, 32, 128).tolist(), [0, 0, 1, 17, 0])


class SafetensorsTest(unittest.TestCase):
    def test_round_trip(self):
        with tempfile.TemporaryDirectory() as d:
            tensors = {"a": torch.randn(3, 4), "b": torch.randn(5).half(), "c": torch.randn(2, 2).bfloat16()}
            write_safetensors(os.path.join(d, "x.safetensors"), tensors)
            back = read_safetensors(os.path.join(d, "x.safetensors"))
            for k, v in tensors.items():
                self.assertEqual(back[k].dtype, v.dtype)
                self.assertTrue(torch.equal(back[k], v), k)

    def test_sharded_folder(self):
        with tempfile.TemporaryDirectory() as d:
            write_safetensors(os.path.join(d, "m-1.safetensors"), {"a": torch.ones(2)})
            write_safetensors(os.path.join(d, "m-2.safetensors"), {"b": torch.zeros(3)})
            with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
                json.dump({"weight_map": {"a": "m-1.safetensors", "b": "m-2.safetensors"}}, f)
            self.assertEqual(sorted(read_checkpoint_folder(d)), ["a", "b"])


class ModelTest(unittest.TestCase):
    def test_loads_a_hugging_face_checkpoint(self):
        with tempfile.TemporaryDirectory() as d:
            state = hf_checkpoint(d, SMALL)
            args = train_reader.parse_args(["--train", "x", "--valid", "x", "--out", d, "--init-from", d])
            model, cfg = train_reader.load_model(args)
            self.assertFalse(model.config.tie_word_embeddings)
            self.assertTrue(torch.equal(model.lm_head.weight, state["lm_head.weight"].float()))
            self.assertTrue(torch.equal(model.decoder.block[0].layer[1].EncDecAttention.q.weight,
                                        state["decoder.block.0.layer.1.EncDecAttention.q.weight"].float()))

    def test_rejects_a_checkpoint_of_another_shape(self):
        with tempfile.TemporaryDirectory() as d:
            hf_checkpoint(d, {**SMALL, "d_ff": 32})
            with open(os.path.join(d, "config.json"), "w") as f:
                json.dump(SMALL, f)
            args = train_reader.parse_args(["--train", "x", "--valid", "x", "--out", d, "--init-from", d])
            with self.assertRaisesRegex(ValueError, "DenseReluDense.wi_0.weight has shape"):
                train_reader.load_model(args)

    def test_hub_names(self):
        names = set(T5(T5Config({**SMALL, "tie_word_embeddings": True})).state_dict())
        self.assertIn("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", names)
        self.assertNotIn("encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight", names)
        self.assertIn("decoder.block.0.layer.2.DenseReluDense.wi_1.weight", names)
        self.assertNotIn("lm_head.weight", names)

    def test_fid_memory_is_each_passage_encoded_alone(self):
        torch.manual_seed(0)
        model = T5(T5Config(SMALL)).eval()
        passages = [[7, 8, 9, 1], [11, 12, 1], [13, 14, 15, 16, 17, 1]]
        e = {"passages": passages, "target": [20, 1]}
        ids, mask, dec, _ = train_reader.collate([e], [[0, 1, 2]], 0, 0)
        memory, mmask = model.fid_memory(ids, mask)
        alone = torch.cat([model.encode(torch.tensor([p]), torch.ones(1, len(p), dtype=torch.long))[0] for p in passages])
        self.assertTrue(torch.allclose(memory[0][mmask[0].bool()], alone, atol=1e-5))
        # No position crosses passages, so the answer cannot depend on their order.
        ids2, mask2, _, _ = train_reader.collate([e], [[2, 0, 1]], 0, 0)
        a = model.decode(dec, memory, mmask)[0]
        b = model.decode(dec, *model.fid_memory(ids2, mask2))[0]
        self.assertTrue(torch.allclose(a, b, atol=1e-5))

    def test_copy_circuit_init(self):
        torch.manual_seed(0)
        square = T5(T5Config({**SMALL, "d_model": 16, "num_heads": 4, "d_kv": 4}))
        square.init_copy_circuit()
        att = square.decoder.block[0].layer[1].EncDecAttention
        self.assertTrue(torch.allclose(att.o.weight @ att.v.weight, torch.eye(16), atol=1e-5))
        narrow = T5(T5Config({**SMALL, "d_model": 16, "num_heads": 2, "d_kv": 4}))
        narrow.init_copy_circuit()
        att = narrow.decoder.block[-1].layer[1].EncDecAttention
        p = att.o.weight @ att.v.weight
        self.assertTrue(torch.allclose(p @ p, p, atol=1e-5))  # an orthogonal projection onto 8 of 16 dimensions
        # Head 0 of the encoder looks at the previous token: its bias for offset -1 beats every other offset.
        bias = square.encoder.block[0].layer[0].SelfAttention.position_bias(6, 6, "cpu")[0, 0]
        self.assertTrue(all(int(bias[i].argmax()) == i - 1 for i in range(1, 6)))

    def test_match_head_init(self):
        torch.manual_seed(0)
        model = T5(T5Config({**SMALL, "vocab_size": 512, "d_model": 32, "num_heads": 4, "d_kv": 8}))
        model.init_copy_circuit()
        model.init_match_head()
        att = model.encoder.block[0].layer[0].SelfAttention
        # Head 1 never looks at itself or ahead; head 0 (the copy circuit's previous-token head) is left as it was.
        bias = att.position_bias(6, 6, "cpu")[0]
        self.assertTrue(all(bias[1, i, j] <= -20 for i in range(6) for j in range(i, 6)))
        self.assertTrue(all(int(bias[0, i].argmax()) == i - 1 for i in range(1, 6)))
        # On the embeddings (as the first layer sees them, normalised), a token's strongest earlier match is its copy.
        ids = torch.tensor([[40, 41, 42, 43, 44, 45, 46, 42, 47, 48]])
        x = model.encoder.block[0].layer[0].layer_norm(model.shared(ids))
        _, weights = att(x, bias=att.position_bias(10, 10, "cpu"), need_weights=True)
        self.assertEqual(int(weights[0, 1, 7].argmax()), 2)
        with self.assertRaisesRegex(ValueError, "at least 2 heads"):
            T5(T5Config({**SMALL, "num_heads": 1, "d_kv": 16})).init_match_head()

    def test_citation_loss(self):
        batch = [{"gold": [False, True, False]}, {"gold": [False, False, False]}]
        picks = [[0, 1, 2], [0, 1, 2]]
        gold = train_reader.gold_tokens(batch, picks, 4)
        self.assertEqual(gold[0].tolist(), [0] * 4 + [1] * 4 + [0] * 4)
        labels = torch.tensor([[5, 1], [5, 1]])
        # All the mass on the gold passage costs nothing; a uniform spread costs -log(1/3). The question whose gold
        # passage is not among its picks adds nothing.
        on_gold = torch.zeros(2, 2, 2, 12)
        on_gold[0, :, :, 4:8] = 0.25
        on_gold[1, :, :, :] = 1 / 12
        self.assertAlmostEqual(float(train_reader.citation_loss([on_gold], gold, labels)), 0.0, places=5)
        uniform = torch.full((2, 2, 2, 12), 1 / 12)
        self.assertAlmostEqual(float(train_reader.citation_loss([uniform, uniform], gold, labels)), -math.log(1 / 3), places=5)
        # Padding positions of the answer (-100) are not counted.
        skewed = uniform.clone()
        skewed[0, :, 1] = on_gold[0, :, 1]
        self.assertAlmostEqual(float(train_reader.citation_loss([skewed], gold, torch.tensor([[5, -100], [5, 1]]))), -math.log(1 / 3), places=5)

    def test_curriculum(self):
        stages = train_reader.parse_curriculum("1:10,3:20")
        self.assertEqual([train_reader.passages_at(s, stages, 10) for s in (0, 9, 10, 19, 20)], [1, 1, 3, 3, 10])
        with self.assertRaisesRegex(ValueError, "passages:until_step"):
            train_reader.parse_curriculum("1-10")
        rng = random.Random(0)
        e = {"passages": [[1]] * 6, "gold": [False, False, False, False, True, False]}
        for _ in range(20):
            pick = train_reader.choose_passages(e, 2, rng)
            self.assertEqual(len(pick), 2)
            self.assertIn(4, pick)

    def test_crop_keeps_the_format_and_the_answer(self):
        title, context = [40, 10], [41, 10]
        head = [7, 8, 9] + title + [50, 51] + context
        body = list(range(100, 160))
        answer = [130, 131, 132]
        rng = random.Random(0)
        starts = set()
        for _ in range(50):
            cropped = train_reader.crop_passage(head + body + [1], answer, 8, (title, context), rng, True)
            self.assertEqual(cropped[:len(head)], head)
            self.assertEqual(cropped[-1], 1)
            window = cropped[len(head):-1]
            self.assertEqual(len(window), 8)
            self.assertEqual(window, body[window[0] - 100:window[0] - 100 + 8])
            self.assertIsNot(train_reader.find(window, answer), -1)
            starts.add(window[0])
        self.assertEqual(starts, set(range(125, 131)))  # every window of 8 that holds the 3 answer tokens
        missing = head + body + [1]
        self.assertEqual(train_reader.crop_passage(missing, [999], 8, (title, context), rng, True), missing)
        self.assertEqual(len(train_reader.crop_passage(missing, [999], 8, (title, context), rng, False)), len(head) + 9)
        short = head + body[:5] + [1]
        self.assertEqual(train_reader.crop_passage(short, answer, 8, (title, context), rng, False), short)

    def test_span_loss_points_at_the_answer_copy(self):
        batch = [{"target": [7, 8, 1], "passages": [[5, 7, 8, 1], [3, 4, 7, 8, 1]], "gold": [False, True]},
                 {"target": [9, 1], "passages": [[2, 3, 1]], "gold": [True]}]
        pos = train_reader.span_positions(batch, [[0, 1], [0]], 5)
        self.assertEqual(pos.tolist(), [[7, 8, -1], [-1, -1, -1]])  # passage 1 starts at memory 5; answer at offset 2
        w = torch.full((2, 2, 3, 10), 0.1)
        w[0, :, 0, 7] = 1.0
        w[0, :, 1, 8] = 1.0
        self.assertAlmostEqual(float(train_reader.span_loss([w], pos)), 0.0, places=5)
        self.assertAlmostEqual(float(train_reader.span_loss([torch.full((2, 2, 3, 10), 0.1)], pos)), -math.log(0.1), places=5)


class TrainingRunTest(unittest.TestCase):
    def test_learns_resumes_and_exports(self):
        with tempfile.TemporaryDirectory() as d:
            copy_task(os.path.join(d, "train.jsonl"), 4000, 3, 1)
            copy_task(os.path.join(d, "valid.jsonl"), 40, 3, 2)
            with open(os.path.join(d, "config.json"), "w") as f:
                json.dump({**SMALL, "d_model": 32, "d_ff": 64, "num_heads": 4, "d_kv": 8}, f)
            out = os.path.join(d, "out")
            base = [sys.executable, os.path.join(HERE, "train_reader.py"), "--train", os.path.join(d, "train.jsonl"),
                    "--valid", os.path.join(d, "valid.jsonl"), "--out", out, "--config", os.path.join(d, "config.json"),
                    "--batch-size", "16", "--lr", "1e-2", "--warmup", "20", "--eval-every", "100", "--threads", "1",
                    "--curriculum", "1:200", "--steps", "500", "--attention-loss", "1.0"]
            first = subprocess.run(base + ["--max-minutes", "0.0001"], capture_output=True, text=True)
            self.assertEqual(first.returncode, 0, first.stderr)
            second = subprocess.run(base, capture_output=True, text=True)
            self.assertEqual(second.returncode, 0, second.stderr)
            self.assertIn("resumed from", second.stdout)
            curve = [json.loads(line) for line in open(os.path.join(out, "curve.jsonl"))]
            self.assertEqual(curve[-1]["step"], 500)
            self.assertLess(curve[-1]["loss"], curve[0]["loss"])
            # The decoder learned where to look: chance is 1/3 for the passage its cross-attention cites.
            self.assertGreater(curve[-1]["valid_citation_at_1"], 0.7)
            model = os.path.join(out, "model")
            self.assertEqual(read_safetensors(os.path.join(model, "model.safetensors"))["shared.weight"].dtype, torch.float16)
            ref = json.load(open(os.path.join(model, "reference.json")))["cases"]
            self.assertEqual(len(ref), 3)
            self.assertEqual(len(ref[0]["logits"]), len(ref[0]["decoder_input_ids"]))
            self.assertEqual(json.load(open(os.path.join(model, "config.json")))["model_type"], "t5")

    def test_names_the_bad_line(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "bad.jsonl")
            with open(path, "w") as f:
                f.write('{"id": "q", "answers": [], "target": [1], "passages": []}\n{"id": 2}\n')
            with self.assertRaisesRegex(ValueError, r"bad.jsonl:1: example q has no passages"):
                train_reader.read_examples(path)


if __name__ == "__main__":
    unittest.main()
