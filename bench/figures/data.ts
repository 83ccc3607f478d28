/**
 * decode_img_s: the lab's 1000 validation JPEGs decoded and resized to 150x150 (Keras-exact PIL
 * nearest) into an in-memory ImageStore, images per second, best of 3 (the machine is shared, so
 * the best run is the least disturbed one). decode_img_fast_s: the same with `fast` (JPEG
 * shrink-on-load + sharp's nearest kernel; not Keras-exact). decode_img_s_299_bilinear: the
 * default recipe's decoding, to 299x299 with PIL's bilinear resize (Keras-exact).
 */
import { join } from 'node:path';
import type { Report } from '../bench.js';
import { buildImageStore, type BuildStoreOptions } from '../../src/data/image-store.js';
import { listImageFolder } from '../../src/data/listing.js';
import { sharedLabDataDir } from '../../src/util/paths.js';

export async function run(report: Report): Promise<void> {
  const listing = await listImageFolder(join(sharedLabDataDir(), 'validation'));
  const measure = async (opts: Partial<BuildStoreOptions>) => {
    let best = 0;
    let bestCpu = 0;
    for (let r = 0; r < 3; r++) {
      const t = performance.now();
      const cpu = process.cpuUsage();
      const store = await buildImageStore(listing, { width: 150, height: 150, ...opts });
      const used = process.cpuUsage(cpu);
      best = Math.max(best, store.count / ((performance.now() - t) / 1000));
      bestCpu = Math.max(bestCpu, store.count / ((used.user + used.system) / 1e6));
    }
    return [best, bestCpu] as const;
  };
  const exact = await measure({});
  report({ name: 'decode_img_s', value: exact[0], unit: 'images/s' });
  // Images per CPU-second (all threads): what each core gives when the machine is not shared.
  report({ name: 'decode_img_per_cpu_s', value: exact[1], unit: 'images/cpu-s' });
  const fast = await measure({ fast: true });
  report({ name: 'decode_img_fast_s', value: fast[0], unit: 'images/s' });
  report({ name: 'decode_img_fast_per_cpu_s', value: fast[1], unit: 'images/cpu-s' });
  const bilinear = await measure({ width: 299, height: 299, interpolation: 'bilinear' });
  report({ name: 'decode_img_s_299_bilinear', value: bilinear[0], unit: 'images/s' });
  report({ name: 'decode_img_per_cpu_s_299_bilinear', value: bilinear[1], unit: 'images/cpu-s' });
}
