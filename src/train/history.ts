/** Per-epoch metrics under Keras's History keys, as written to history.json. */
export interface History {
  loss: number[];
  accuracy: number[];
  val_loss: number[];
  val_accuracy: number[];
  /** With fine-tuning: each epoch's phase (1: head on frozen features, 2: fine-tuning). */
  phase?: number[];
  /** The mean of the classes' validation recalls, when the run reports it (unbalanced classes). */
  val_balanced_accuracy?: number[];
  /** The learning rate of each epoch, under the key Keras's callbacks log it (with a schedule). */
  learning_rate?: number[];
}

/** The optional per-epoch keys graft writes when a run has them. */
export const EXTRA_HISTORY_KEYS = ['val_balanced_accuracy', 'learning_rate'] as const;

export function emptyHistory(): History {
  return { loss: [], accuracy: [], val_loss: [], val_accuracy: [] };
}
