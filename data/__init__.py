"""Audio input and output, mu-law coding, atomic file writes, and (in `data.frames`) the frame generator shared
by the trainers."""

from data.audio import (AudioCorpus, AudioError, find_audio_files, load_audio, read_audio, split_validation,
                        write_audio)
from data.files import atomic_path, folder_problem, replace_atomically, write_json
from data.labels import load_labelled_audio
from data.mulaw import (QUANTIZATION_CHANNELS, mu_law_bin_edges, mu_law_decode, mu_law_encode,
                        mu_law_round_trip, mu_law_table)

__all__ = ["AudioCorpus", "AudioError", "QUANTIZATION_CHANNELS", "atomic_path", "find_audio_files", "folder_problem",
           "load_audio", "load_labelled_audio", "mu_law_bin_edges", "mu_law_decode", "mu_law_encode",
           "mu_law_round_trip", "mu_law_table", "read_audio", "replace_atomically", "split_validation", "write_audio",
           "write_json"]
