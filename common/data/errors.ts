/** A problem with the user's data or data options; the message names the file or field at fault. */
export class DataError extends Error {
  override readonly name = "DataError";
  /** The file (or folder, or option) at fault, when there is one. */
  readonly file: string | undefined;
  /** The message without the file name. */
  readonly detail: string;

  constructor(detail: string, file?: string) {
    super(file === undefined ? detail : `${file}: ${detail}`);
    this.file = file;
    this.detail = detail;
  }
}
