"""Domain vocabulary: the embedding and LM head keep only the tokens the domain uses.

usage (count ids over train + calibration), policy (keep / domain / coverage), bpe
(closure and tokenizer trimming with the `tokenizers` library), tokenizer_files
(ids that always stay, the trimmed tokenizer folder), surgery (embedding/head rows),
plan (one decision joining them).
"""

from forge_cuda.vocab.plan import VocabPlan, plan_vocab
from forge_cuda.vocab.policy import VocabPolicy, parse_vocab_policy
from forge_cuda.vocab.surgery import restrict_vocab, row_params
from forge_cuda.vocab.tokenizer_files import save_trimmed_tokenizer, trim_hf_tokenizer
from forge_cuda.vocab.usage import count_ids, domain_usage

__all__ = ["VocabPlan", "VocabPolicy", "count_ids", "domain_usage", "parse_vocab_policy", "plan_vocab",
           "restrict_vocab", "row_params", "save_trimmed_tokenizer", "trim_hf_tokenizer"]
