/**
 * decode_img_s: the lab's 1000 validation JPEGs decoded and resized to 150x150 (Keras-exact PIL
 * nearest) into an in-memory ImageStore, images per second, best of 3 (the machine is shared, so
 * the best run is the least disturbed one). decode_img_fast_s: the same with `fast` (JPEG
 * shrink-on-load + sharp's nearest kernel; not Keras-exact).
 */
import { join } from 'node:path';
import type { Report } from '../bench.js';
import { buildImageStore } from '../../src/data/image-store.js';
import { listImageFolder } from '../../src/data/listing.js';
import { sharedLabDataDir } from '../../src/util/paths.js';

export async function run(report: Report): Promise<void> {
  const listing = await listImageFolder(join(sharedLabDataDir(), 'validation'));
  const measure = async (fast: boolean) => {
    let best = 0;
    let bestCpu = 0;
    for (let r = 0; r < 3; r++) {
      const t = performance.now();
      const cpu = process.cpuUsage();
      const store = await buildImageStore(listing, { width: 150, height: 150, fast });
      const used = process.cpuUsage(cpu);
      best = Math.max(best, store.count / ((performance.now() - t) / 1000));
      bestCpu = Math.max(bestCpu, store.count / ((used.user + used.system) / 1e6));
    }
    return [best, bestCpu] as const;
  };
  const exact = await measure(false);
  report({ name: 'decode_img_s', value: exact[0], unit: 'images/s' });
  // Images per CPU-second (all threads): what each core gives when the machine is not shared.
  report({ name: 'decode_img_per_cpu_s', value: exact[1], unit: 'images/cpu-s' });
  const fast = await measure(true);
  report({ name: 'decode_img_fast_s', value: fast[0], unit: 'images/s' });
  report({ name: 'decode_img_fast_per_cpu_s', value: fast[1], unit: 'images/cpu-s' });
}
