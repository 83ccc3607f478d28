/** graft's library API: everything the CLI does is available from here. */
export { GraftError } from './util/errors.js';
export { Random } from './util/random.js';
export { MALLOC_TUNABLES, mallocTunablesSet, relaunchWithMallocTunables } from './util/malloc-tunables.js';
export type { KerasGraph, KerasLayer, WeightMap, WeightTensor } from './backbone/keras-graph.js';
export { LAB_HEAD } from './model/head-spec.js';
export type { HeadSpec, HeadLayerSpec, Activation } from './model/head-spec.js';
export { writeTfjsLayersModel, kerasModelTopology } from './export/tfjs-layers.js';
export type { TfjsExportOptions } from './export/tfjs-layers.js';
export { readHistory, writeHistory } from './export/history-io.js';
export { computeMetrics, rocAuc } from './evaluate/metrics.js';
export type { EvaluationMetrics, ClassMetrics, Misclassified, Probabilities } from './evaluate/metrics.js';
export { writeEvaluation, formatEvaluation, evaluationJson } from './evaluate/report.js';
export type { EvaluationContext } from './evaluate/report.js';
export { plotHistory } from './evaluate/plots.js';
export {
  LAB_AUGMENTATION,
  NO_AUGMENTATION,
  IDENTITY_TRANSFORM,
  applyTransform,
  randomTransform,
  affineMatrix,
  isAffineIdentity,
  fromKerasOptions,
  validateAugmentConfig,
  zoomBounds,
} from './data/augment.js';
export type { AugmentConfig, TransformParams, FillMode, ShiftRange, PixelAffine, KerasAugmentOptions } from './data/augment.js';
export { AugmentPool, sharedFloat32, sharedPackedImages } from './data/augment-pool.js';
export type { PackedImages, AugmentBatchOptions } from './data/augment-pool.js';
export { augmentPreview } from './data/augment-preview.js';
export type { AugmentPreviewOptions } from './data/augment-preview.js';
export { preprocessParams, isPreprocessName, PREPROCESS_NAMES } from './data/preprocess.js';
export type { PreprocessName, PreprocessParams } from './data/preprocess.js';
export {
  listImageFolder,
  listImageFiles,
  listValidationFolder,
  resolveDataset,
  splitListing,
  classCounts,
  isImageFileName,
  IMAGE_EXTENSIONS,
  VALIDATION_FOLDER_NAMES,
} from './data/listing.js';
export type { DatasetListing, LabelledFile, SkippedFile, ListOptions, ResolveOptions, ResolvedDataset } from './data/listing.js';
export { decodeImage, decodeImageInto, decodeBytesInto, decodeFullRgb, readImageSize, BadImageError, DEFAULT_MAX_PIXELS, INTERPOLATIONS, ORIENTATIONS, readOrientation, pilNearestIndices } from './data/decode.js';
export type { DecodeOptions, Interpolation, Orientation } from './data/decode.js';
export { buildImageStore, DEFAULT_MEMORY_BUDGET } from './data/image-store.js';
export type { ImageStore, BuildStoreOptions } from './data/image-store.js';
export { BatchOrder, batchIndices, epochOrder, stepsPerEpoch, encodeLabels, labelWidth, readBatches } from './data/batches.js';
export type { ClassMode, OrderOptions, ImageBatch } from './data/batches.js';
export { inspectDataset, formatDatasetReport } from './data/inspect.js';
export type { DatasetReport, SplitReport, SizeStats, InspectOptions } from './data/inspect.js';
export { headForClasses, initHead, headToWeightMap, headFromWeightMap, headInputSize } from './model/head.js';
export type { HeadParams, DenseParams } from './model/head.js';
export { resolveOptimizer, applyUpdate, slotCount } from './train/optimizers.js';
export type { OptimizerConfig, ResolvedOptimizer, OptimizerState } from './train/optimizers.js';
export { binaryCrossentropy, categoricalCrossentropy, binaryAccuracy, categoricalAccuracy } from './train/losses.js';
export { HeadTrainer } from './train/head-trainer.js';
export type { HeadTrainerOptions, StepResult } from './train/head-trainer.js';
export { fit, arrayBatchSource, trainerFingerprint } from './train/fit.js';
export type { Batch, BatchSource, ArrayData, FitOptions, FitCallbacks, EpochLogs, TrainEnd, FitTrainer } from './train/fit.js';
export { EarlyStopping, resolveEarlyStopping, MONITORS } from './train/early-stopping.js';
export type { EarlyStoppingConfig, ResolvedEarlyStopping, EarlyStoppingState, EarlyStoppingDecision, Monitor } from './train/early-stopping.js';
export { DEFAULT_FINE_TUNE_EPOCHS, DEFAULT_FINE_TUNE_LEARNING_RATE } from './train/finetune/phase.js';
export type { FineTuneConfig } from './train/finetune/phase.js';
export { trainableSegment, trainableCounts } from './train/finetune/segment.js';
export type { Segment, TrainableWeight } from './train/finetune/segment.js';
export { SegmentEngine } from './train/finetune/segment-engine.js';
export { resolveClassWeights, parseClassWeight, sampleWeights, classRecalls, imbalanceRatio } from './train/class-weights.js';
export type { ClassWeightSetting } from './train/class-weights.js';
export { LrSchedule, resolveLrSchedule, LR_SCHEDULES } from './train/lr-schedule.js';
export type { LrScheduleConfig, ResolvedLrSchedule, LrScheduleState } from './train/lr-schedule.js';
export { lrRangeTest, valleyIndex } from './train/lr-range-test.js';
export type { RangeTestOptions, RangeTestResult } from './train/lr-range-test.js';
export { findLearningRate } from './lr-finder.js';
export type { LrFindOptions, LrFindResult } from './lr-finder.js';
export { listLabelTable, readLabelTable, resolveTableDataset } from './data/label-table.js';
export type { LabelTableOptions, TableDataOptions } from './data/label-table.js';
export { answer, UNKNOWN } from './model/answers.js';
export type { Answer, AnswerOptions } from './model/answers.js';
export { saveCheckpoint, loadCheckpoint, configFingerprint } from './train/checkpoint.js';
export type { Checkpoint } from './train/checkpoint.js';
// Run folders: the record of graft's files (writers claim and record theirs), the one-run lock.
export { RunManifest, MANIFEST_NAME, type ManifestEntry } from './train/run-manifest.js';
export { readRunLock, runningHolder, describeHolder, LOCK_NAME, type RunLockHolder } from './train/run-lock.js';
export { emptyHistory } from './train/history.js';
export type { History } from './train/history.js';
export { loadTfjsLayersModel } from './backbone/weights/tfjs-layers.js';
export type { LoadedWeights } from './backbone/weights/tfjs-layers.js';
export { cutGraph } from './backbone/cut.js';
export { kerasToOnnx } from './backbone/onnx/convert.js';
export type { KerasToOnnxOptions } from './backbone/onnx/convert.js';
export { createOrtExtractor, DEFAULT_BATCH } from './backbone/engine.js';
export type { FeatureExtractor, OrtExtractorOptions } from './backbone/engine.js';
export { loadBackbone, checkInputSize, DEFAULT_CUT, DEFAULT_INPUT_SIZE } from './backbone/backbone.js';
export type { Backbone, BackboneOptions } from './backbone/backbone.js';
export { quantizeBackbone, BACKBONE_PRECISIONS, DEFAULT_BACKBONE_PRECISION } from './backbone/int8.js';
export type { BackbonePrecision } from './backbone/int8.js';
export { calibrateRanges, storeCalibrationSource, DEFAULT_CALIBRATION_IMAGES } from './backbone/calibrate.js';
export type { CalibrationSource, CalibrationMethod } from './backbone/calibrate.js';
export { quantizeQdq } from './backbone/onnx/quantize-qdq.js';
export { summarizeModel, countParams } from './model/summary.js';
export type { ParamCounts, TrainableFrom } from './model/summary.js';
export { parseHeadSpec, formatHeadSpec } from './model/head-spec-parse.js';
export { inceptionV3Graph } from './backbone/architectures/inception-v3.js';
export type { InceptionV3Options } from './backbone/architectures/inception-v3.js';
export { kerasLayerOrder } from './backbone/keras-layer-order.js';
export { loadKerasH5Weights, readKerasH5Layers, readKerasH5Origin, readKerasH5Topology } from './backbone/weights/keras-h5.js';
export { loadKerasArchive } from './backbone/weights/keras-archive.js';
export { kerasSnakeCase, keras3LayerPaths } from './backbone/weights/keras3-h5.js';
export type { KerasH5Options } from './backbone/weights/keras-h5.js';
export { saveKerasH5Weights } from './backbone/weights/keras-h5-writer.js';
export {
  ensureImagenetWeights,
  cachedImagenetWeightsPath,
  hasCachedImagenetWeights,
  IMAGENET_WEIGHTS_FILE,
  IMAGENET_WEIGHTS_URL,
  IMAGENET_WEIGHTS_MD5,
} from './backbone/weights/imagenet.js';
export type { ImagenetWeightsOptions } from './backbone/weights/imagenet.js';
export { resolveWeights, planWeights, DEFAULT_WEIGHTS } from './backbone/weights/resolve.js';
export type { WeightsPlan, LoadedModel, ResolveWeightsOptions } from './backbone/weights/resolve.js';
export { downloadFile, DownloadNetworkError } from './util/download.js';
export { resolveLabDataset, cachedLabDatasetDir, LAB_DATASET_URL, LAB_DATASET_NAME } from './data/lab-dataset.js';
export type { LabDatasetOptions } from './data/lab-dataset.js';
export type { DownloadOptions, DownloadProgress } from './util/download.js';
export { trainClassifier, exportClassifier, LAB_RECIPE, LAB_STEPS } from './learner.js';
export type { TrainOptions, TrainResult } from './learner.js';
export { DEFAULT_RECIPE, RECIPES, RECIPE_NAMES, RECIPE_TITLES, RECIPE_FIELDS, recipeByName, isRecipeName, resolveRecipe, describeRecipe, describeSettings } from './train/recipes.js';
export type { RecipeName, RecipeSettings, ResolvedRecipe } from './train/recipes.js';
export { parseFeedMode, feedModeName, faithfulSource, viewsSource, cachedFeatures, computeFeatures } from './train/feature-sources.js';
export type { FeedMode, FeedContext } from './train/feature-sources.js';
export { extractFeatures, mergeFeatureShards, parseShard, shardRows, shardPartFile, DEFAULT_EXTRACTION_BUDGET } from './train/feature-extraction.js';
export type { ExtractFeaturesOptions, ExtractFeaturesResult, Shard } from './train/feature-extraction.js';
export { FeatureStoreFile, FeatureStoreWriter, mergeFeatureStoreParts } from './train/feature-store.js';
export { loadClassifier, predictFiles, predictImages, classProbabilities, summarizeClassifier, mirrorImages } from './model/saved-classifier.js';
export type { LoadedClassifier, Prediction, ImageInput, PredictOptions } from './model/saved-classifier.js';
export type { ClassifierInfo } from './model/classifier-info.js';
export { evaluateFolder } from './evaluate/evaluate-folder.js';
export type { FolderEvaluation } from './evaluate/evaluate-folder.js';
export { headForward, classScoreGradient, gradCamMap } from './model/head-gradient.js';
export type { HeadPass } from './model/head-gradient.js';
export { loadExplainer } from './model/grad-cam.js';
export type { Explainer, Explanation } from './model/grad-cam.js';
export { rocCurve } from './evaluate/roc-curve.js';
export { startUiServer } from './ui/server.js';
export type { UiOptions, UiServer } from './ui/server.js';
