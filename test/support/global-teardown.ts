// Placeholder: replaced by the FerretDB harness (stops what global-setup started).
export default async function globalTeardown(): Promise<void> {}
