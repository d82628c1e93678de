/** What a call threw or rejected with (sync throws and rejections alike); fails if it succeeded. */
export async function failure(fn: () => Promise<unknown>): Promise<Error> {
  try {
    await fn();
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected the call to fail, it succeeded');
}
