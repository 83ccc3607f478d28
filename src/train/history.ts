/** Per-epoch metrics under Keras's History keys, as written to history.json. */
export interface History {
  loss: number[];
  accuracy: number[];
  val_loss: number[];
  val_accuracy: number[];
  /** With fine-tuning: each epoch's phase (1: head on frozen features, 2: fine-tuning). */
  phase?: number[];
}

export function emptyHistory(): History {
  return { loss: [], accuracy: [], val_loss: [], val_accuracy: [] };
}
