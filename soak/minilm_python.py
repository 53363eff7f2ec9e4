"""The baseline for the minilm embedder's throughput: the same model files
(ops/install-minilm.sh) under Python sentence-transformers (PyTorch, CPU),
embedding Febrl3's record texts as the embedding writer renders them, in
batches of 256 — what `conductor-soak vector-search` times for the Rust
embedder. Usage: python soak/minilm_python.py [MODEL_DIR] [FEBRL3_CSV]
(needs `pip install sentence-transformers`)."""
import csv, os, re, sys, time

from sentence_transformers import SentenceTransformer

model_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.expanduser(
    os.environ.get("CONDUCTOR_MODELS", "~/.cache/conductor/models") + "/all-MiniLM-L6-v2")
data = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
    os.environ.get("CONDUCTOR_ER_DATA") or os.path.expanduser(
        os.environ.get("CONDUCTOR_DATA_SETS", "~/.cache/conductor/datasets") + "/febrl"),
    "febrl3.csv")  # ops/install-datasets.sh puts it there
fields = ["given_name", "surname", "date_of_birth", "street_number", "address_1",
          "address_2", "suburb", "postcode", "state"]

def render(row):
    text = " ".join(row.get(f, "") or "" for f in fields).lower()
    text = re.sub(r"[^\w\s]", " ", text)
    return " ".join(text.split())

with open(data, newline="") as f:
    texts = [render({k.strip(): (v or "").strip() for k, v in r.items()}) for r in csv.DictReader(f)]
model = SentenceTransformer(model_dir, device="cpu")
model.encode(texts[:256], batch_size=256)  # warm-up
started = time.perf_counter()
model.encode(texts, batch_size=256)
elapsed = time.perf_counter() - started
import torch
print(f"sentence-transformers (torch {torch.__version__}, {torch.get_num_threads()} threads): "
      f"{len(texts)} texts in {elapsed:.1f} s = {len(texts) / elapsed:.0f} texts/s")
s = model.encode(["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."])
print("published similarities 0.6660 0.1046 0.1411; here:", model.similarity(s, s)[0, 1:].tolist(), model.similarity(s, s)[1, 2].item())
