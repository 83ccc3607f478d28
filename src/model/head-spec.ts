/**
 * What sits on top of the frozen backbone: a pooling step, then Dense/Dropout layers, ending in
 * Dense(1, sigmoid) for two classes or Dense(k, softmax) for k classes. The pooling step is
 * Flatten, GlobalAveragePooling2D, or a coarse grid (AveragePooling2D / MaxPooling2D, padding
 * 'valid') followed by Flatten: a grid keeps where things are, coarsely, at a fraction of
 * Flatten's weights.
 */
export type Activation = 'relu' | 'linear' | 'sigmoid' | 'softmax';

export type HeadLayerSpec =
  | { kind: 'flatten' }
  | { kind: 'gap' }
  | GridPoolSpec
  | { kind: 'dense'; units: number; activation: Activation }
  | { kind: 'dropout'; rate: number };

/** AveragePooling2D or MaxPooling2D(pool_size=pool, strides=stride, padding='valid'). */
export interface GridPoolSpec {
  kind: 'avgpool' | 'maxpool';
  pool: number;
  stride: number;
}

export interface HeadSpec {
  layers: HeadLayerSpec[];
}

/** The Keras lab's head: Flatten -> Dense(1024, relu) -> Dropout(0.2) -> Dense(1, sigmoid). */
export const LAB_HEAD: HeadSpec = {
  layers: [
    { kind: 'flatten' },
    { kind: 'dense', units: 1024, activation: 'relu' },
    { kind: 'dropout', rate: 0.2 },
    { kind: 'dense', units: 1, activation: 'sigmoid' },
  ],
};
