//! Async migration (placeholder).

pub struct AsyncState {}

impl AsyncState {
    pub fn new(_ndbs: usize) -> Self {
        AsyncState {}
    }
    pub fn has_job(&self, _db: i32) -> bool {
        false
    }
}
