// Placeholder until the torch checkpoint reader lands.
func readTorchCheckpoint(path: String) throws -> [TensorView] {
    throw MambaFailure.unsupported("\(path): reading pytorch_model.bin is not implemented yet")
}
