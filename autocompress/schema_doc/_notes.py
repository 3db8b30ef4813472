"""Descriptions of the recipe fields that their classes do not document.

A field documented neither in its class's ``Attributes:`` nor by a comment takes its text from
here. A description in the class always wins; a test checks every key here is a real field,
so moving a description into its class's docstring is the way to shorten this table.
"""

NOTES: dict[str, str] = {
    "name": "The search's name: the MLflow experiment unless `tracking.experiment` is given "
            "(default: the recipe file's name without `.yaml`).",
    "space": "The search-space YAML file (see [space.md](space.md)), relative to the recipe.",
    "budgets": "Constraints every candidate must meet, e.g. `size_kb<=60`, "
               "`latency_ms<=2@cpu-onnxruntime`, `speedup>=3`, `accuracy>=0.95`; a candidate "
               "that breaks a measured budget is infeasible and never trained.",
    "model.name": "A zoo model (`digits_cnn`, `lenet5`, `minilm_classifier`, ...) or "
                  "`package.module:factory` returning an `nn.Module`.",
    "model.kwargs": "Keyword arguments of the model's factory.",
    "model.checkpoint": "A state dict (`.pt`) of the trained model; without one the baseline "
                        "is trained once (`model.pretrain`) and cached under `search.storage`.",
    "model.pretrain.epochs": "Epochs of the baseline's training.",
    "model.pretrain.lr": "Learning rate of the baseline's training.",
    "model.student.name": "A zoo model or `package.module:factory`: the student architecture.",
    "model.student.kwargs": "Keyword arguments of the student's factory.",
    "model.student.checkpoint": "Initial student weights; without them fresh weights are "
                                "drawn from the search seed.",
    "data.name": "A zoo dataset (`digits`, `mnist`, `bbc_headlines`) or "
                 "`package.module:factory` returning a LightningDataModule, DataSplits, or "
                 "train / val / test Datasets or DataLoaders (dict or tuple).",
    "data.kwargs": "Keyword arguments of the data factory.",
    "data.batch_size": "Batch size of the loaders built from Datasets (fine-tuning, "
                       "evaluation).",
    "data.label_key": "The label's key in dict batches (default: `labels`, then `label`); the "
                      "other keys reach the model as keyword arguments.",
    "hardware.target": "The profiler every candidate and the baseline are timed with; its "
                       "latency is the Pareto front's latency axis.",
    "hardware.threads": "Threads the timed model may use.",
    "hardware.batch_size": "Batch size of the timed inputs (taken from the val split).",
    "hardware.warmup": "Untimed runs before timing.",
    "hardware.repeats": "The most timed runs.",
    "hardware.min_repeats": "The fewest timed runs.",
    "hardware.max_seconds": "Timing stops after this long (past `min_repeats`).",
    "hardware.target_spread": "Timing stops once the spread (IQR / median) is below this "
                              "(past `min_repeats`).",
    "hardware.quiet_timeout_s": "The longest a timing waits for the node to go quiet; a "
                                "timing that gave up is logged with `quiet = 0`.",
    "hardware.reject_margin": "With `predict`: how far (relative) over a latency budget a "
                              "prediction must be to reject the plan unbuilt.",
    "training.epochs": "Fine-tuning epochs per candidate (ASHA may stop a weak one earlier).",
    "training.optimizer": "The fine-tuning optimizer.",
    "training.lr": "The fine-tuning learning rate.",
    "training.weight_decay": "The optimizer's weight decay.",
    "training.distillation": "Softened-softmax distillation from the original model: on by "
                             "default; `null` trains on hard labels only.",
    "training.attention_transfer": "Attention transfer between layer pairs (off by default).",
    "training.hint": "FitNets hints between layer pairs (off by default).",
    "training.sparsity": "A sparsity penalty during fine-tuning (off by default).",
    "training.limit_train_batches": "Batches per training epoch: a count (integer) or a "
                                    "fraction in (0, 1].",
    "training.limit_val_batches": "Batches per validation: a count (integer) or a fraction in "
                                  "(0, 1].",
    "training.gradient_clip_val": "Clip each step's gradients at this value (off when null).",
    "training.gradient_clip_algorithm": "Clip the gradients' total `norm` or each `value`.",
    "training.calibration_samples": "Training inputs used for calibration: data-aware prune "
                                    "importance, least-squares initialisation, int8 ranges.",
    "search.trials": "Candidates to try.",
    "search.concurrency": "Trials running at once.",
    "search.sampler": "Optuna's sampler: multi-objective TPE, NSGA-II or random.",
    "search.seed": "Seed of the sampler, of fresh weights and of the data splits' shuffling.",
    "search.scheduler": "`asha` stops weak candidates early (on the val metric); `none` trains "
                        "every feasible candidate for `training.epochs`.",
    "search.grace_period": "ASHA: epochs every candidate trains before it can be stopped.",
    "search.reduction_factor": "ASHA: the fraction (1 / this) of candidates kept at each rung.",
    "search.storage": "The folder of the search's state: Ray Tune's storage, the cached "
                      "baseline, artifacts before they are logged (resume reads it).",
    "search.cpus_per_trial": "CPUs each trial reserves (also its torch threads).",
    "tracking.uri": "The MLflow tracking URI: a local store or `http://host:5000`.",
    "tracking.experiment": "The MLflow experiment (default: the recipe's `name`).",
}
