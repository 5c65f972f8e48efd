/**
 * The random numbers llama.cpp's samplers draw, reproduced bit for bit, so
 * that a seeded request samples the same tokens on the sampler-chain path
 * (sampler-chain.ts) as llama-server and the native path do: `std::mt19937`
 * seeded with the request's seed, read through libstdc++'s
 * `std::uniform_real_distribution` (that is, `std::generate_canonical`),
 * and `std::discrete_distribution` as Mirostat uses it.
 */
export class Mt19937 {
  private readonly state = new Uint32Array(624);
  private index = 624;

  constructor(seed: number) {
    const mt = this.state;
    mt[0] = seed >>> 0;
    for (let i = 1; i < 624; i++) {
      const prev = mt[i - 1]! ^ (mt[i - 1]! >>> 30);
      // 1812433253 * prev + i, modulo 2^32, without losing bits to doubles.
      mt[i] = (((((prev & 0xffff0000) >>> 16) * 1812433253) << 16) + (prev & 0x0000ffff) * 1812433253 + i) >>> 0;
    }
  }

  /** The next 32-bit output (`operator()`). */
  next(): number {
    const mt = this.state;
    if (this.index >= 624) {
      for (let i = 0; i < 624; i++) {
        const y = (mt[i]! & 0x80000000) | (mt[(i + 1) % 624]! & 0x7fffffff);
        mt[i] = mt[(i + 397) % 624]! ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0);
      }
      this.index = 0;
    }
    let y = mt[this.index++]!;
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /** `std::uniform_real_distribution<double>(0, 1)`: two outputs, low word first, in [0, 1). */
  uniformDouble(): number {
    const low = this.next();
    const high = this.next();
    const value = (low + high * 4294967296) / 18446744073709551616;
    // libstdc++ maps a result rounded up to 1 to the largest double below it.
    return value < 1 ? value : 1 - Number.EPSILON / 2;
  }

  /** `std::uniform_real_distribution<float>(0, 1)`: one output, as a float, in [0, 1). */
  uniformFloat(): number {
    const value = Math.fround(Math.fround(this.next()) / 4294967296);
    return value < 1 ? value : Math.fround(1 - 2 ** -24);
  }

  /**
   * `std::discrete_distribution<int>` over `weights` (llama.cpp's
   * `llama_sample_dist`, which Mirostat draws with): fewer than two weights
   * give index 0 without a draw; otherwise the first index whose cumulative
   * normalized weight reaches one uniform double.
   */
  discrete(weights: readonly number[]): number {
    if (weights.length < 2) return 0;
    let sum = 0;
    for (const w of weights) sum += w;
    const target = this.uniformDouble();
    let run = 0;
    for (let i = 0; i < weights.length - 1; i++) {
      run += weights[i]! / sum;
      if (run >= target) return i;
    }
    // The last cumulative weight is set to 1.
    return weights.length - 1;
  }
}
