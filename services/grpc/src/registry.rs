//! `observatory.v1.RegistryService`: cohorts, patients, episodes, authorisations, follow-ups,
//! adverse events and history.

use observatory_app::{
    Call,
    cases::{CaseFile, CaseSelection, sheet::Lang as SheetLang},
    registry as ops,
};
use observatory_domain::{
    Violations, codes,
    corrections::{AdverseEventUpdate, CohortTransition, PatientUpdate},
    lifecycle::{AuthorisationRequest, AuthorisationTransition as AT, EpisodeDeclaration, EpisodeTransition as ET},
    model::{self as m, RecordId, YearMonth},
    pseudonym::Identity,
    registration::{self as rules, Registration, Subject},
    treatment_corrections::{AuthorisationUpdate, EpisodeUpdate, FollowUpUpdate},
};
use observatory_proto::v1::{self as pb, registry_service_server::RegistryService};
use observatory_store::{CohortFilter, EpisodeFilter, NewCohort, Stored, Versioned};
use tonic::{Request, Response, Status};

use crate::convert::{self as c, all_some, enum_in, enum_in_opt};
use crate::guard;
use crate::{ApiState, error};

/// Wire names of cohort transitions (`COHORT_TRANSITION_CLOSE`...), for `enum_in!`.
#[derive(Debug, Clone, Copy)]
enum CohortTransitionCode {
    Close,
    Reopen,
}

impl CohortTransitionCode {
    fn from_code(code: &str) -> Option<Self> {
        match code {
            "CLOSE" => Some(Self::Close),
            "REOPEN" => Some(Self::Reopen),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RegistryApi {
    state: ApiState,
}

impl RegistryApi {
    pub fn new(state: ApiState) -> Self {
        Self { state }
    }

    /// Reads one record for `call`; a patient-level read is audited as the call's operation.
    async fn get<T: Stored, P>(
        &self,
        req: &Request<pb::GetRequest>,
        operation: &'static str,
        out: fn(&Versioned<T>) -> P,
    ) -> Result<Response<P>, Status> {
        let id = c::id(&req.get_ref().id).map_err(|e| error::invalid_field("id", e.reason, &e.description))?;
        let call = guard::call(req, operation)?;
        let x = ops::get::<T>(&self.state.app, &call, &id).await.map_err(error::app)?;
        Ok(Response::new(out(&x)))
    }

    /// The follow-ups or adverse events of an episode, the read audited.
    async fn list_by_episode<T: Stored>(
        &self,
        req: &Request<pb::ListByEpisodeRequest>,
        operation: &'static str,
    ) -> Result<observatory_store::Page<Versioned<T>>, Status> {
        let (episode, page) = by_episode(req.get_ref())?;
        let call = guard::call(req, operation)?;
        ops::list_by_episode::<T>(&self.state.app, &call, &episode, &page)
            .await
            .map_err(error::app)
    }

    /// `RegisterPatient` for `call` (a gRPC call, or an item of an import).
    pub(crate) async fn register_patient_as(
        &self,
        call: &Call,
        r: &pb::RegisterPatientRequest,
    ) -> Result<pb::Patient, Status> {
        let (key, registration) = parse_registration(r)?;
        let x = ops::register_patient(&self.state.app, call, Some(key), registration)
            .await
            .map_err(error::app)?;
        Ok(c::patient(&x))
    }

    /// `DeclareEpisode` for `call`.
    pub(crate) async fn declare_episode_as(
        &self,
        call: &Call,
        r: &pb::DeclareEpisodeRequest,
    ) -> Result<pb::DeclareEpisodeResponse, Status> {
        let (key, declaration) = parse_declaration(r)?;
        let d = ops::declare_episode(&self.state.app, call, Some(key), declaration)
            .await
            .map_err(error::app)?;
        Ok(pb::DeclareEpisodeResponse {
            episode: Some(c::episode(&d.episode)),
            authorisation: d.authorisation.as_ref().map(c::authorisation),
            previous_episode: d.previous.as_ref().map(c::episode),
        })
    }

    /// `TransitionEpisode` for `call`.
    pub(crate) async fn transition_episode_as(
        &self,
        call: &Call,
        r: &pb::TransitionEpisodeRequest,
    ) -> Result<pb::Episode, Status> {
        let (id, expected, transition) = parse_episode_transition(r)?;
        let x = ops::transition_episode(&self.state.app, call, id, expected, transition)
            .await
            .map_err(error::app)?;
        Ok(c::episode(&x))
    }

    /// `TransitionAuthorisation` for `call`.
    pub(crate) async fn transition_authorisation_as(
        &self,
        call: &Call,
        r: &pb::TransitionAuthorisationRequest,
    ) -> Result<pb::Authorisation, Status> {
        let (id, expected, transition) = parse_authorisation_transition(r)?;
        let x = ops::transition_authorisation(&self.state.app, call, id, expected, transition)
            .await
            .map_err(error::app)?;
        Ok(c::authorisation(&x))
    }

    /// `RecordFollowUp` for `call`.
    pub(crate) async fn record_follow_up_as(
        &self,
        call: &Call,
        r: &pb::RecordFollowUpRequest,
    ) -> Result<pb::FollowUp, Status> {
        let (key, visit) = parse_follow_up(r)?;
        let x = ops::record_follow_up(&self.state.app, call, Some(key), visit)
            .await
            .map_err(error::app)?;
        Ok(c::follow_up(&x.follow_up))
    }

    /// `RecordAdverseEvent` for `call`.
    pub(crate) async fn record_adverse_event_as(
        &self,
        call: &Call,
        r: &pb::RecordAdverseEventRequest,
    ) -> Result<pb::AdverseEvent, Status> {
        let (key, event) = parse_adverse_event(r)?;
        let x = ops::record_adverse_event(&self.state.app, call, Some(key), event)
            .await
            .map_err(error::app)?;
        Ok(c::adverse_event(&x))
    }

    /// `UpdatePatient` for `call`.
    pub(crate) async fn update_patient_as(
        &self,
        call: &Call,
        r: &pb::UpdatePatientRequest,
    ) -> Result<pb::Patient, Status> {
        let (id, expected, update, reason) = parse_patient_update(r)?;
        let x = ops::update_patient(&self.state.app, call, id, expected, update, reason)
            .await
            .map_err(error::app)?;
        Ok(c::patient(&x))
    }

    /// `RequestRcpReview` for `call`.
    pub(crate) async fn request_rcp_review_as(
        &self,
        call: &Call,
        r: &pb::RequestRcpReviewRequest,
    ) -> Result<pb::Patient, Status> {
        let (id, expected, request) = parse_rcp_request(r)?;
        let x = ops::request_rcp_review(&self.state.app, call, id, expected, request)
            .await
            .map_err(error::app)?;
        Ok(c::patient(&x))
    }

    /// `RecordRcpOpinion` for `call`.
    pub(crate) async fn record_rcp_opinion_as(
        &self,
        call: &Call,
        r: &pb::RecordRcpOpinionRequest,
    ) -> Result<pb::Patient, Status> {
        let (id, expected, opinion) = parse_rcp_opinion(r)?;
        let x = ops::record_rcp_opinion(&self.state.app, call, id, expected, opinion)
            .await
            .map_err(error::app)?;
        Ok(c::patient(&x))
    }

    /// `UpdateAdverseEvent` for `call`.
    pub(crate) async fn update_adverse_event_as(
        &self,
        call: &Call,
        r: &pb::UpdateAdverseEventRequest,
    ) -> Result<pb::AdverseEvent, Status> {
        let (id, expected, update, reason) = parse_adverse_event_update(r)?;
        let x = ops::update_adverse_event(&self.state.app, call, id, expected, update, reason)
            .await
            .map_err(error::app)?;
        Ok(c::adverse_event(&x))
    }
    /// `UpdateEpisode` for `call`.
    pub(crate) async fn update_episode_as(
        &self,
        call: &Call,
        r: &pb::UpdateEpisodeRequest,
    ) -> Result<pb::Episode, Status> {
        let (id, expected, update, reason) = parse_episode_update(r)?;
        let x = ops::update_episode(&self.state.app, call, id, expected, update, reason)
            .await
            .map_err(error::app)?;
        Ok(c::episode(&x))
    }

    /// `UpdateAuthorisation` for `call`.
    pub(crate) async fn update_authorisation_as(
        &self,
        call: &Call,
        r: &pb::UpdateAuthorisationRequest,
    ) -> Result<pb::Authorisation, Status> {
        let (id, expected, update, reason) = parse_authorisation_update(r)?;
        let x = ops::update_authorisation(&self.state.app, call, id, expected, update, reason)
            .await
            .map_err(error::app)?;
        Ok(c::authorisation(&x))
    }

    /// `UpdateFollowUp` for `call`.
    pub(crate) async fn update_follow_up_as(
        &self,
        call: &Call,
        r: &pb::UpdateFollowUpRequest,
    ) -> Result<pb::FollowUp, Status> {
        let (id, expected, update, reason) = parse_follow_up_update(r)?;
        let x = ops::update_follow_up(&self.state.app, call, id, expected, update, reason)
            .await
            .map_err(error::app)?;
        Ok(c::follow_up(&x.follow_up))
    }
}

/// Episode id and page of a per-episode list.
pub fn by_episode(r: &pb::ListByEpisodeRequest) -> Result<(RecordId, observatory_store::PageRequest), Status> {
    let mut v = Violations::new();
    let page = c::page(&mut v, r.page.as_ref());
    let episode = v.check("episode_id", c::id(&r.episode_id));
    all_some!(v; episode);
    Ok((episode, page))
}

fn field_err(field: &str, e: observatory_domain::CodeError) -> Status {
    error::invalid_field(field, e.reason, &e.description)
}

#[tonic::async_trait]
impl RegistryService for RegistryApi {
    async fn create_cohort(&self, req: Request<pb::CreateCohortRequest>) -> Result<Response<pb::Cohort>, Status> {
        let (key, cohort) = parse_cohort(req.get_ref())?;
        let call = guard::call(&req, "CreateCohort")?;
        let x = ops::create_cohort(&self.state.app, &call, Some(key), cohort)
            .await
            .map_err(error::app)?;
        Ok(Response::new(c::cohort(&x)))
    }

    async fn get_cohort(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::Cohort>, Status> {
        self.get::<m::Cohort, _>(&req, "GetCohort", c::cohort).await
    }

    async fn list_cohorts(
        &self,
        req: Request<pb::ListCohortsRequest>,
    ) -> Result<Response<pb::ListCohortsResponse>, Status> {
        let (filter, page) = parse_cohort_filter(req.get_ref())?;
        let call = guard::call(&req, "ListCohorts")?;
        let p = ops::list_cohorts(&self.state.app, &call, &filter, &page)
            .await
            .map_err(error::app)?;
        Ok(Response::new(pb::ListCohortsResponse {
            cohorts: p.items.iter().map(c::cohort).collect(),
            next_page_token: p.next_page_token.unwrap_or_default(),
        }))
    }

    async fn register_patient(
        &self,
        req: Request<pb::RegisterPatientRequest>,
    ) -> Result<Response<pb::Patient>, Status> {
        let call = guard::call(&req, "RegisterPatient")?;
        Ok(Response::new(self.register_patient_as(&call, req.get_ref()).await?))
    }

    async fn get_patient(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::Patient>, Status> {
        self.get::<m::Patient, _>(&req, "GetPatient", c::patient).await
    }

    async fn list_patients(
        &self,
        req: Request<pb::ListPatientsRequest>,
    ) -> Result<Response<pb::ListPatientsResponse>, Status> {
        let (filter, page) = parse_patient_filter(req.get_ref())?;
        let call = guard::call(&req, "ListPatients")?;
        let p = ops::list_patients(&self.state.app, &call, &filter, &page)
            .await
            .map_err(error::app)?;
        Ok(Response::new(pb::ListPatientsResponse {
            patients: p.items.iter().map(c::patient).collect(),
            next_page_token: p.next_page_token.unwrap_or_default(),
        }))
    }

    async fn declare_episode(
        &self,
        req: Request<pb::DeclareEpisodeRequest>,
    ) -> Result<Response<pb::DeclareEpisodeResponse>, Status> {
        let call = guard::call(&req, "DeclareEpisode")?;
        Ok(Response::new(self.declare_episode_as(&call, req.get_ref()).await?))
    }

    async fn get_episode(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::Episode>, Status> {
        self.get::<m::Episode, _>(&req, "GetEpisode", c::episode).await
    }

    async fn list_episodes(
        &self,
        req: Request<pb::ListEpisodesRequest>,
    ) -> Result<Response<pb::ListEpisodesResponse>, Status> {
        let (filter, page) = parse_episode_filter(req.get_ref())?;
        let call = guard::call(&req, "ListEpisodes")?;
        let p = ops::list_episodes(&self.state.app, &call, &filter, &page)
            .await
            .map_err(error::app)?;
        Ok(Response::new(pb::ListEpisodesResponse {
            episodes: p.items.iter().map(c::episode).collect(),
            next_page_token: p.next_page_token.unwrap_or_default(),
        }))
    }

    async fn transition_episode(
        &self,
        req: Request<pb::TransitionEpisodeRequest>,
    ) -> Result<Response<pb::Episode>, Status> {
        let call = guard::call(&req, "TransitionEpisode")?;
        Ok(Response::new(self.transition_episode_as(&call, req.get_ref()).await?))
    }

    async fn get_authorisation(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::Authorisation>, Status> {
        self.get::<m::Authorisation, _>(&req, "GetAuthorisation", c::authorisation)
            .await
    }

    async fn transition_authorisation(
        &self,
        req: Request<pb::TransitionAuthorisationRequest>,
    ) -> Result<Response<pb::Authorisation>, Status> {
        let call = guard::call(&req, "TransitionAuthorisation")?;
        Ok(Response::new(
            self.transition_authorisation_as(&call, req.get_ref()).await?,
        ))
    }

    async fn record_follow_up(
        &self,
        req: Request<pb::RecordFollowUpRequest>,
    ) -> Result<Response<pb::FollowUp>, Status> {
        let call = guard::call(&req, "RecordFollowUp")?;
        Ok(Response::new(self.record_follow_up_as(&call, req.get_ref()).await?))
    }

    async fn record_adverse_event(
        &self,
        req: Request<pb::RecordAdverseEventRequest>,
    ) -> Result<Response<pb::AdverseEvent>, Status> {
        let call = guard::call(&req, "RecordAdverseEvent")?;
        Ok(Response::new(self.record_adverse_event_as(&call, req.get_ref()).await?))
    }

    async fn get_follow_up(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::FollowUp>, Status> {
        self.get::<m::FollowUp, _>(&req, "GetFollowUp", c::follow_up).await
    }

    async fn list_follow_ups(
        &self,
        req: Request<pb::ListByEpisodeRequest>,
    ) -> Result<Response<pb::ListFollowUpsResponse>, Status> {
        let p = self.list_by_episode::<m::FollowUp>(&req, "ListFollowUps").await?;
        Ok(Response::new(pb::ListFollowUpsResponse {
            follow_ups: p.items.iter().map(c::follow_up).collect(),
            next_page_token: p.next_page_token.unwrap_or_default(),
        }))
    }

    async fn list_adverse_events(
        &self,
        req: Request<pb::ListByEpisodeRequest>,
    ) -> Result<Response<pb::ListAdverseEventsResponse>, Status> {
        let p = self
            .list_by_episode::<m::AdverseEvent>(&req, "ListAdverseEvents")
            .await?;
        Ok(Response::new(pb::ListAdverseEventsResponse {
            adverse_events: p.items.iter().map(c::adverse_event).collect(),
            next_page_token: p.next_page_token.unwrap_or_default(),
        }))
    }

    async fn get_adverse_event(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::AdverseEvent>, Status> {
        self.get::<m::AdverseEvent, _>(&req, "GetAdverseEvent", c::adverse_event)
            .await
    }

    async fn transition_cohort(
        &self,
        req: Request<pb::TransitionCohortRequest>,
    ) -> Result<Response<pb::Cohort>, Status> {
        let (id, expected, transition) = parse_cohort_transition(req.get_ref())?;
        let call = guard::call(&req, "TransitionCohort")?;
        let x = ops::transition_cohort(&self.state.app, &call, id, expected, transition)
            .await
            .map_err(error::app)?;
        Ok(Response::new(c::cohort(&x)))
    }

    async fn update_patient(&self, req: Request<pb::UpdatePatientRequest>) -> Result<Response<pb::Patient>, Status> {
        let call = guard::call(&req, "UpdatePatient")?;
        Ok(Response::new(self.update_patient_as(&call, req.get_ref()).await?))
    }

    async fn merge_patients(&self, req: Request<pb::MergePatientsRequest>) -> Result<Response<pb::Patient>, Status> {
        let (kept, merged, reason) = parse_merge(req.get_ref())?;
        let call = guard::call(&req, "MergePatients")?;
        let x = ops::merge_patients(&self.state.app, &call, kept, merged, reason)
            .await
            .map_err(error::app)?;
        Ok(Response::new(c::patient(&x)))
    }

    async fn request_rcp_review(
        &self,
        req: Request<pb::RequestRcpReviewRequest>,
    ) -> Result<Response<pb::Patient>, Status> {
        let call = guard::call(&req, "RequestRcpReview")?;
        Ok(Response::new(self.request_rcp_review_as(&call, req.get_ref()).await?))
    }

    async fn record_rcp_opinion(
        &self,
        req: Request<pb::RecordRcpOpinionRequest>,
    ) -> Result<Response<pb::Patient>, Status> {
        let call = guard::call(&req, "RecordRcpOpinion")?;
        Ok(Response::new(self.record_rcp_opinion_as(&call, req.get_ref()).await?))
    }

    async fn update_adverse_event(
        &self,
        req: Request<pb::UpdateAdverseEventRequest>,
    ) -> Result<Response<pb::AdverseEvent>, Status> {
        let call = guard::call(&req, "UpdateAdverseEvent")?;
        Ok(Response::new(self.update_adverse_event_as(&call, req.get_ref()).await?))
    }

    async fn update_episode(&self, req: Request<pb::UpdateEpisodeRequest>) -> Result<Response<pb::Episode>, Status> {
        let call = guard::call(&req, "UpdateEpisode")?;
        Ok(Response::new(self.update_episode_as(&call, req.get_ref()).await?))
    }

    async fn update_authorisation(
        &self,
        req: Request<pb::UpdateAuthorisationRequest>,
    ) -> Result<Response<pb::Authorisation>, Status> {
        let call = guard::call(&req, "UpdateAuthorisation")?;
        Ok(Response::new(self.update_authorisation_as(&call, req.get_ref()).await?))
    }

    async fn update_follow_up(
        &self,
        req: Request<pb::UpdateFollowUpRequest>,
    ) -> Result<Response<pb::FollowUp>, Status> {
        let call = guard::call(&req, "UpdateFollowUp")?;
        Ok(Response::new(self.update_follow_up_as(&call, req.get_ref()).await?))
    }

    async fn get_history(
        &self,
        req: Request<pb::GetHistoryRequest>,
    ) -> Result<Response<pb::GetHistoryResponse>, Status> {
        let (kind, id) = parse_history(req.get_ref())?;
        let call = guard::call(&req, "GetHistory")?;
        let versions = ops::history(&self.state.app, &call, kind, &id)
            .await
            .map_err(error::app)?;
        Ok(Response::new(pb::GetHistoryResponse {
            versions: versions.iter().map(c::history_entry).collect(),
        }))
    }

    async fn export_adverse_events(
        &self,
        req: Request<pb::ExportAdverseEventsRequest>,
    ) -> Result<Response<pb::ExportAdverseEventsResponse>, Status> {
        let asked = parse_case_export(req.get_ref())?;
        let call = guard::call(&req, "ExportAdverseEvents")?;
        let file = observatory_app::cases::export_cases(&self.state.app, &call, &asked.selection, &asked.page)
            .await
            .map_err(error::app)?;
        let (content, content_type, extension) = asked.format.render(&file, asked.lang);
        Ok(Response::new(pb::ExportAdverseEventsResponse {
            content: content.into_bytes(),
            content_type: content_type.to_owned(),
            file_name: case_file_name(&asked.selection, &file, extension),
            case_ids: file.cases.iter().map(observatory_app::cases::e2b::case_id).collect(),
            next_page_token: file.next_page_token.clone().unwrap_or_default(),
        }))
    }

    async fn get_worklist(&self, req: Request<pb::GetWorklistRequest>) -> Result<Response<pb::Worklist>, Status> {
        let horizon = parse_worklist(req.get_ref())?;
        let call = guard::call(&req, "GetWorklist")?;
        let today = observatory_store::today(chrono::Utc::now());
        let w = ops::worklist(&self.state.app, &call, horizon, today)
            .await
            .map_err(error::app)?;
        Ok(Response::new(worklist_out(&w)))
    }
}

// Parsing: the contract's messages into the operations' domain requests, every field checked
// for its form, violations named by the contract's field paths.

/// What a case export asks for: the cases, their format and language, the page.
#[derive(Debug, Clone)]
pub struct CaseExport {
    pub selection: CaseSelection,
    pub format: CaseFormat,
    pub lang: SheetLang,
    pub page: observatory_store::PageRequest,
}

/// A case file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseFormat {
    E2bXml,
    Html,
}

impl CaseFormat {
    /// The file as the format writes it: its bytes, content type and file name extension.
    pub fn render(self, file: &CaseFile, lang: SheetLang) -> (String, &'static str, &'static str) {
        match self {
            CaseFormat::E2bXml => (observatory_app::cases::e2b::message(file), "application/xml", "xml"),
            CaseFormat::Html => (
                observatory_app::cases::sheet::render(file, lang),
                "text/html; charset=utf-8",
                "html",
            ),
        }
    }
}

pub fn parse_case_export(r: &pb::ExportAdverseEventsRequest) -> Result<CaseExport, Status> {
    use pb::export_adverse_events_request::Selection;
    let mut v = Violations::new();
    let selection = match &r.selection {
        None => {
            v.push("selection", "REQUIRED", "name an adverse_event_id or a period");
            None
        }
        Some(Selection::AdverseEventId(id)) => v.check("adverse_event_id", c::id(id)).map(CaseSelection::One),
        Some(Selection::Period(p)) => {
            let from = v.check("period.from", c::date(&p.from));
            let to = v.check("period.to", c::date(&p.to));
            match (from, to) {
                (Some(from), Some(to)) => {
                    v.check("period.to", rules::check_case_period(from, to));
                    Some(CaseSelection::Period {
                        from,
                        to,
                        serious_only: p.serious_only,
                    })
                }
                _ => None,
            }
        }
    };
    let format = v.check(
        "format",
        match pb::CaseFormat::try_from(r.format) {
            Ok(pb::CaseFormat::E2bXml) => Ok(CaseFormat::E2bXml),
            Ok(pb::CaseFormat::Html) => Ok(CaseFormat::Html),
            _ => Err(codes_error(
                "REQUIRED",
                "must be CASE_FORMAT_E2B_XML or CASE_FORMAT_HTML",
            )),
        },
    );
    let lang = match r.language.as_str() {
        "" => Some(SheetLang::Fr),
        code => v.check(
            "language",
            SheetLang::from_code(code).ok_or_else(|| codes_error("UNKNOWN_CODE", "must be \"fr\" or \"en\"")),
        ),
    };
    let (size, token) = r
        .page
        .as_ref()
        .map(|p| (p.page_size, p.page_token.clone()))
        .unwrap_or_default();
    let max = observatory_app::cases::MAX_CASES;
    let size = match u32::try_from(size) {
        Ok(0) => Some(max),
        Ok(n) if n <= max => Some(n),
        _ => {
            v.push(
                "page.page_size",
                "OUT_OF_RANGE",
                format!("must be between 1 and {max} (0 for {max})"),
            );
            None
        }
    };
    all_some!(v; selection, format, lang, size);
    Ok(CaseExport {
        selection,
        format,
        lang,
        page: observatory_store::PageRequest {
            size,
            token: (!token.is_empty()).then_some(token),
        },
    })
}

fn codes_error(reason: &'static str, description: &str) -> observatory_domain::CodeError {
    observatory_domain::CodeError::new(reason, description)
}

pub fn parse_cohort(r: &pb::CreateCohortRequest) -> Result<(String, NewCohort), Status> {
    let mut v = Violations::new();
    let key = v.check("idempotency_key", c::idempotency_key(&r.idempotency_key));
    let name = v.check("name", codes::bounded_text(&r.name, 200));
    let filiere = v.check("filiere", c::filiere(&r.filiere));
    let pathway = v.check("pathway", enum_in!(r.pathway, pb::Pathway, "PATHWAY_", m::Pathway));
    let drug_atc = v.check("drug_atc", c::atc(&r.drug_atc));
    let orpha_codes = Some(c::orpha_list(&mut v, "orpha_codes", &r.orpha_codes));
    let framework_id = v.check("framework_id", c::optional(&r.framework_id, c::id));
    // 0 takes the framework's schedule; the range is the registry's rule.
    let follow_up_months = match u32::try_from(r.follow_up_months) {
        Ok(0) => Some(None),
        Ok(months) => {
            c::rule(&mut v, rules::check_follow_up_months(Some(months)));
            Some(Some(months))
        }
        Err(_) => {
            v.push("follow_up_months", "OUT_OF_RANGE", "must not be negative");
            None
        }
    };
    all_some!(v; key, name, filiere, pathway, drug_atc, orpha_codes, framework_id, follow_up_months);
    Ok((
        key,
        NewCohort {
            name,
            filiere,
            pathway,
            drug_atc,
            orpha_codes,
            framework_id,
            follow_up_months,
        },
    ))
}

pub fn parse_cohort_filter(
    r: &pb::ListCohortsRequest,
) -> Result<(CohortFilter, observatory_store::PageRequest), Status> {
    let mut v = Violations::new();
    let page = c::page(&mut v, r.page.as_ref());
    let filter = CohortFilter {
        pathway: v
            .check("pathway", enum_in_opt!(r.pathway, pb::Pathway, "PATHWAY_", m::Pathway))
            .flatten(),
        drug_atc: v.check("drug_atc", c::optional(&r.drug_atc, c::atc)).flatten(),
        filiere: v.check("filiere", c::optional(&r.filiere, c::filiere)).flatten(),
    };
    v.into_result().map_err(error::domain)?;
    Ok((filter, page))
}

pub fn parse_cohort_transition(r: &pb::TransitionCohortRequest) -> Result<(RecordId, i64, CohortTransition), Status> {
    let mut v = Violations::new();
    let id = v.check("id", c::id(&r.id));
    let expected = v.check("expected_version", c::version(r.expected_version));
    let transition = v.check(
        "transition",
        enum_in!(
            r.transition,
            pb::CohortTransition,
            "COHORT_TRANSITION_",
            CohortTransitionCode
        ),
    );
    all_some!(v; id, expected, transition);
    let transition = match transition {
        CohortTransitionCode::Close => CohortTransition::Close,
        CohortTransitionCode::Reopen => CohortTransition::Reopen,
    };
    Ok((id, expected, transition))
}

pub fn parse_patient_filter(
    r: &pb::ListPatientsRequest,
) -> Result<(observatory_store::PatientFilter, observatory_store::PageRequest), Status> {
    let mut v = Violations::new();
    let page = c::page(&mut v, r.page.as_ref());
    let pseudonym = match c::opt_str(&r.pseudonym) {
        None => None,
        // An IdMR, or a keyed pseudonym: digits or lowercase hexadecimal, nothing a name could
        // be written in.
        Some(p) if codes::IdMr::parse(p).is_ok() => Some(p.to_owned()),
        Some(p) if p.len() == 64 && p.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) => {
            Some(p.to_owned())
        }
        Some(_) => {
            v.push(
                "pseudonym",
                "BAD_FORMAT",
                "must be an IdMR (20 digits) or a keyed pseudonym (64 lowercase hexadecimal digits)",
            );
            None
        }
    };
    let cohort_id = v.check("cohort_id", c::optional(&r.cohort_id, c::id)).flatten();
    let pathway = v
        .check("pathway", enum_in_opt!(r.pathway, pb::Pathway, "PATHWAY_", m::Pathway))
        .flatten();
    let status = v
        .check(
            "status",
            enum_in_opt!(r.status, pb::EpisodeStatus, "EPISODE_STATUS_", m::EpisodeStatus),
        )
        .flatten();
    v.into_result().map_err(error::domain)?;
    Ok((
        observatory_store::PatientFilter {
            pseudonym,
            cohort_id,
            pathway,
            status,
        },
        page,
    ))
}

/// The horizon of a worklist: 30, 60 or 90 days (0 for 30).
pub fn parse_worklist(r: &pb::GetWorklistRequest) -> Result<u32, Status> {
    u32::try_from(r.within_days)
        .ok()
        .and_then(observatory_domain::worklist::horizon)
        .ok_or_else(|| error::invalid_field("within_days", "OUT_OF_RANGE", "must be 30, 60 or 90 (0 for 30)"))
}

pub fn worklist_out(w: &ops::Worklist) -> pb::Worklist {
    pb::Worklist {
        as_of_date: w.as_of.to_string(),
        within_days: w.horizon as i32,
        expiring_authorisations: w
            .expiring
            .iter()
            .map(|x| pb::ExpiringAuthorisation {
                authorisation: Some(c::authorisation(&x.authorisation)),
                episode: Some(c::episode(&x.episode)),
                days_left: x.days_left as i32,
            })
            .collect(),
        overdue_follow_ups: w
            .overdue
            .iter()
            .map(|x| pb::OverdueFollowUp {
                episode: Some(c::episode(&x.episode)),
                due_date: x.due.to_string(),
                last_visit_date: x.last_visit.map(|d| d.to_string()).unwrap_or_default(),
                days_late: x.days_late as i32,
            })
            .collect(),
        never_initiated: w.never_initiated.iter().map(c::episode).collect(),
        truncated: w.truncated,
        dispensed_first: w
            .dispensed_first
            .iter()
            .map(|x| pb::DispensedFirst {
                episode: Some(c::episode(&x.episode)),
                authorisation: Some(c::authorisation(&x.authorisation)),
            })
            .collect(),
        undeclared_serious_events: w
            .undeclared
            .iter()
            .map(|x| pb::UndeclaredEvent {
                adverse_event: Some(c::adverse_event(&x.event)),
                episode: Some(c::episode(&x.episode)),
                days_since_onset: i32::try_from(x.days).unwrap_or(i32::MAX),
            })
            .collect(),
        frameworks: w
            .frameworks
            .iter()
            .map(|x| pb::FrameworkAlert {
                framework: Some(c::framework(&x.framework)),
                warning: c::enum_out!(x.warning, pb::FrameworkWarning, "FRAMEWORK_WARNING_"),
                date: x.date.to_string(),
                days_left: i32::try_from(x.days_left).unwrap_or(i32::MAX),
            })
            .collect(),
    }
}

pub fn parse_history(r: &pb::GetHistoryRequest) -> Result<(m::RecordKind, String), Status> {
    let kind = enum_in!(r.kind, pb::RecordKind, "RECORD_KIND_", m::RecordKind).map_err(|e| field_err("kind", e))?;
    let id = match kind {
        m::RecordKind::Centre => c::finess(&r.id).map(String::from),
        m::RecordKind::Prescriber => c::rpps(&r.id).map(String::from),
        _ => c::id(&r.id).map(String::from),
    }
    .map_err(|e| field_err("id", e))?;
    Ok((kind, id))
}

pub fn parse_registration(r: &pb::RegisterPatientRequest) -> Result<(String, Registration), Status> {
    use pb::register_patient_request::Subject as S;
    let mut v = Violations::new();
    let key = v.check("idempotency_key", c::idempotency_key(&r.idempotency_key));
    let sex = v.check("sex", enum_in_opt!(r.sex, pb::Sex, "SEX_", m::Sex));
    let birth_year_month = v.check("birth_year_month", c::optional(&r.birth_year_month, YearMonth::parse));
    let subject = match &r.subject {
        None => {
            v.push("subject", "REQUIRED", "either idmr or identity is required");
            None
        }
        Some(S::Idmr(raw)) => v.check("idmr", codes::IdMr::parse(raw)).map(Subject::IdMr),
        Some(S::Identity(id)) => {
            // Descriptions never repeat what was sent: these are identity fields.
            let last = v.check("identity.last_name", codes::bounded_text(&id.last_name, 100));
            let first = v.check("identity.first_name", codes::bounded_text(&id.first_name, 100));
            let birth = v.check("identity.birth_date", c::date(&id.birth_date));
            let sex = v.check("identity.sex", enum_in!(id.sex, pb::Sex, "SEX_", m::Sex));
            match (last, first, birth, sex) {
                (Some(last_name), Some(first_name), Some(birth_date), Some(sex)) => Some(Subject::Identity(Identity {
                    last_name,
                    first_name,
                    birth_date,
                    sex,
                })),
                _ => None,
            }
        }
    };
    let region = v.check("region_code", c::optional(&r.region_code, c::region));
    let diagnoses = Some(c::diagnoses(&mut v, &r.diagnoses));
    let cde = c::cde(&mut v, "cde", r.cde.as_ref());
    all_some!(v; key, subject, sex, birth_year_month, region, diagnoses);
    Ok((
        key,
        Registration {
            subject,
            sex,
            birth_year_month,
            region,
            objects_to_reuse: r.objects_to_reuse,
            diagnoses,
            cde,
        },
    ))
}

pub fn parse_declaration(r: &pb::DeclareEpisodeRequest) -> Result<(String, EpisodeDeclaration), Status> {
    let mut v = Violations::new();
    let key = v.check("idempotency_key", c::idempotency_key(&r.idempotency_key));
    let patient_id = v.check("patient_id", c::id(&r.patient_id));
    let cohort_id = v.check("cohort_id", c::id(&r.cohort_id));
    let pathway = v.check("pathway", enum_in!(r.pathway, pb::Pathway, "PATHWAY_", m::Pathway));
    let indication = v.check(
        "indication_orpha_code",
        observatory_domain::codes::OrphaCode::parse(&r.indication_orpha_code),
    );
    let prescriber = v.check("prescriber_rpps", c::rpps(&r.prescriber_rpps));
    let centre_finess = v.check("centre_finess", c::optional(&r.centre_finess, c::finess));
    let rcp = c::rcp(&mut v, "rcp", r.rcp.as_ref());
    let off_label = c::off_label(&mut v, "off_label", r.off_label.as_ref());
    let dosage = c::dosage(&mut v, "dosage", r.dosage.as_ref());
    let request_date = v.check("request_date", c::date(&r.request_date));
    let authorisation = match &r.authorisation {
        None => Some(None),
        Some(a) => {
            let submitted = v.check("authorisation.submitted_date", c::date(&a.submitted_date));
            let reference = v.check("authorisation.reference", c::optional(&a.reference, c::text(100)));
            match (submitted, reference) {
                (Some(submitted_date), Some(reference)) => Some(Some(AuthorisationRequest {
                    submitted_date,
                    reference,
                })),
                _ => None,
            }
        }
    };
    let previous_episode = match c::opt_str(&r.previous_episode_id) {
        None => {
            if r.previous_episode_version != 0 {
                v.push(
                    "previous_episode_version",
                    "NOT_APPLICABLE",
                    "is only taken with previous_episode_id",
                );
            }
            Some(None)
        }
        Some(raw) => {
            let id = v.check("previous_episode_id", c::id(raw));
            let version = v.check("previous_episode_version", c::version(r.previous_episode_version));
            match (id, version) {
                (Some(id), Some(version)) => Some(Some((id, version))),
                _ => None,
            }
        }
    };
    let rcp_review = v.check("rcp_review_id", c::optional(&r.rcp_review_id, c::id));
    all_some!(v; key, patient_id, cohort_id, pathway, indication, prescriber, centre_finess, request_date, authorisation, previous_episode, rcp_review);
    Ok((
        key,
        EpisodeDeclaration {
            patient_id,
            cohort_id,
            pathway,
            indication,
            prescriber,
            centre_finess,
            rcp,
            off_label,
            dosage,
            request_date,
            authorisation,
            previous_episode,
            dispense_first: r.dispense_first,
            // The reference release's word, set by the operation.
            single_administration: false,
            rcp_review,
        },
    ))
}

pub fn parse_episode_filter(
    r: &pb::ListEpisodesRequest,
) -> Result<(EpisodeFilter, observatory_store::PageRequest), Status> {
    let mut v = Violations::new();
    let page = c::page(&mut v, r.page.as_ref());
    let (from, to) = match &r.request_date {
        None => (None, None),
        Some(range) => (
            v.check("request_date.from", c::optional(&range.from, c::date))
                .flatten(),
            v.check("request_date.to", c::optional(&range.to, c::date)).flatten(),
        ),
    };
    if let (Some(f), Some(t)) = (from, to)
        && t < f
    {
        v.push(
            "request_date.to",
            "BEFORE_START",
            "must not be before request_date.from",
        );
    }
    let filter = EpisodeFilter {
        cohort_id: v.check("cohort_id", c::optional(&r.cohort_id, c::id)).flatten(),
        patient_id: v.check("patient_id", c::optional(&r.patient_id, c::id)).flatten(),
        centre: v
            .check("centre_finess", c::optional(&r.centre_finess, c::finess))
            .flatten(),
        pathway: v
            .check("pathway", enum_in_opt!(r.pathway, pb::Pathway, "PATHWAY_", m::Pathway))
            .flatten(),
        drug_atc: v.check("drug_atc", c::optional(&r.drug_atc, c::atc)).flatten(),
        orpha_code: v
            .check(
                "orpha_code",
                c::optional(&r.orpha_code, observatory_domain::codes::OrphaCode::parse),
            )
            .flatten(),
        status: v
            .check(
                "status",
                enum_in_opt!(r.status, pb::EpisodeStatus, "EPISODE_STATUS_", m::EpisodeStatus),
            )
            .flatten(),
        request_from: from,
        request_to: to,
    };
    v.into_result().map_err(error::domain)?;
    Ok((filter, page))
}

pub fn parse_episode_transition(r: &pb::TransitionEpisodeRequest) -> Result<(RecordId, i64, ET), Status> {
    use pb::transition_episode_request::Transition as T;
    let mut v = Violations::new();
    let id = v.check("id", c::id(&r.id));
    let expected = v.check("expected_version", c::version(r.expected_version));
    let transition = match &r.transition {
        None => {
            v.push(
                "transition",
                "REQUIRED",
                "one of initiate, stop, transfer, lost_to_follow_up, deceased is required",
            );
            None
        }
        Some(T::Initiate(x)) => {
            let date = v.check(
                "initiate.first_administration_date",
                c::date(&x.first_administration_date),
            );
            let dosage = c::dosage(&mut v, "initiate.dosage", x.dosage.as_ref());
            date.map(|date| ET::Initiate { date, dosage })
        }
        Some(T::Stop(x)) => {
            let date = v.check("stop.date", c::date(&x.date));
            let reason = v.check(
                "stop.reason",
                enum_in!(x.reason, pb::StopReason, "STOP_REASON_", m::StopReason),
            );
            match (date, reason) {
                (Some(date), Some(reason)) => Some(ET::Stop { date, reason }),
                _ => None,
            }
        }
        Some(T::Transfer(x)) => {
            let date = v.check("transfer.date", c::date(&x.date));
            let to = v.check("transfer.to_centre_finess", c::finess(&x.to_centre_finess));
            match (date, to) {
                (Some(date), Some(to)) => Some(ET::Transfer { date, to }),
                _ => None,
            }
        }
        Some(T::LostToFollowUp(x)) => v
            .check("lost_to_follow_up.date", c::date(&x.date))
            .map(|date| ET::LostToFollowUp { date }),
        Some(T::Deceased(x)) => v
            .check("deceased.date", c::date(&x.date))
            .map(|date| ET::Deceased { date }),
    };
    all_some!(v; id, expected, transition);
    Ok((id, expected, transition))
}

pub fn parse_authorisation_transition(r: &pb::TransitionAuthorisationRequest) -> Result<(RecordId, i64, AT), Status> {
    use pb::transition_authorisation_request::{DatedStep, Grant, Transition as T};
    let mut v = Violations::new();
    let id = v.check("id", c::id(&r.id));
    let expected = v.check("expected_version", c::version(r.expected_version));
    let step = |v: &mut Violations, field: &str, s: &DatedStep| v.check(&format!("{field}.date"), c::date(&s.date));
    let grant = |v: &mut Violations, field: &str, g: &Grant| {
        let decision = v.check(&format!("{field}.decision_date"), c::date(&g.decision_date));
        let from = v.check(&format!("{field}.valid_from"), c::date(&g.valid_from));
        let to = v.check(&format!("{field}.valid_to"), c::date(&g.valid_to));
        let reference = v.check(&format!("{field}.reference"), c::optional(&g.reference, c::text(100)));
        match (decision, from, to, reference) {
            (Some(d), Some(f), Some(t), Some(r)) => Some((d, f, t, r)),
            _ => None,
        }
    };
    let transition = match &r.transition {
        None => {
            v.push("transition", "REQUIRED", "one transition is required");
            None
        }
        Some(T::RequestInformation(s)) => {
            step(&mut v, "request_information", s).map(|date| AT::RequestInformation { date })
        }
        Some(T::Resubmit(s)) => step(&mut v, "resubmit", s).map(|date| AT::Resubmit { date }),
        Some(T::Refuse(s)) => step(&mut v, "refuse", s).map(|date| AT::Refuse { date }),
        Some(T::SubmitRenewal(s)) => step(&mut v, "submit_renewal", s).map(|date| AT::SubmitRenewal { date }),
        Some(T::Expire(s)) => step(&mut v, "expire", s).map(|date| AT::Expire { date }),
        Some(T::Suspend(s)) => step(&mut v, "suspend", s).map(|date| AT::Suspend { date }),
        Some(T::Reinstate(s)) => step(&mut v, "reinstate", s).map(|date| AT::Reinstate { date }),
        Some(T::Withdraw(s)) => step(&mut v, "withdraw", s).map(|date| AT::Withdraw { date }),
        Some(T::Grant(g)) => {
            grant(&mut v, "grant", g).map(|(decision_date, valid_from, valid_to, reference)| AT::Grant {
                decision_date,
                valid_from,
                valid_to,
                reference,
            })
        }
        Some(T::Renew(g)) => {
            grant(&mut v, "renew", g).map(|(decision_date, valid_from, valid_to, reference)| AT::Renew {
                decision_date,
                valid_from,
                valid_to,
                reference,
            })
        }
    };
    all_some!(v; id, expected, transition);
    Ok((id, expected, transition))
}

pub fn parse_follow_up(r: &pb::RecordFollowUpRequest) -> Result<(String, m::FollowUp), Status> {
    let mut v = Violations::new();
    let key = v.check("idempotency_key", c::idempotency_key(&r.idempotency_key));
    let episode_id = v.check("episode_id", c::id(&r.episode_id));
    let visit_date = v.check("visit_date", c::date(&r.visit_date));
    let efficacy = v.check(
        "efficacy",
        enum_in!(
            r.efficacy,
            pb::EfficacyAssessment,
            "EFFICACY_ASSESSMENT_",
            m::EfficacyAssessment
        ),
    );
    let adherence = v.check(
        "adherence",
        enum_in!(r.adherence, pb::Adherence, "ADHERENCE_", m::Adherence),
    );
    let measures = Some(c::measures(&mut v, &r.measures));
    // 0 when not measured; the plausible range is the registry's rule.
    let weight_kg = (r.weight_kg != 0.0).then_some(r.weight_kg);
    c::rule(&mut v, rules::check_weight(weight_kg));
    let weight_kg = Some(weight_kg);
    all_some!(v; key, episode_id, visit_date, efficacy, adherence, measures, weight_kg);
    Ok((
        key,
        m::FollowUp {
            episode_id,
            visit_date,
            efficacy,
            measures,
            weight_kg,
            adherence,
        },
    ))
}

pub fn parse_adverse_event(r: &pb::RecordAdverseEventRequest) -> Result<(String, m::AdverseEvent), Status> {
    let mut v = Violations::new();
    let key = v.check("idempotency_key", c::idempotency_key(&r.idempotency_key));
    let episode_id = v.check("episode_id", c::id(&r.episode_id));
    let onset_date = v.check("onset_date", c::date(&r.onset_date));
    let meddra_pt = v.check("meddra_pt_code", c::meddra(&r.meddra_pt_code));
    let meddra_soc = v.check("meddra_soc_code", c::optional(&r.meddra_soc_code, c::meddra));
    let outcome = v.check(
        "outcome",
        enum_in!(r.outcome, pb::AeOutcome, "AE_OUTCOME_", m::AeOutcome),
    );
    let causality = v.check(
        "causality",
        enum_in!(r.causality, pb::Causality, "CAUSALITY_", m::Causality),
    );
    let pv_declaration_date = v.check("pv_declaration_date", c::optional(&r.pv_declaration_date, c::date));
    let pv_reference = v.check("pv_reference", c::optional(&r.pv_reference, c::text(100)));
    let pv_receiver = v.check("pv_receiver", c::optional(&r.pv_receiver, c::text(200)));
    let details = c::case_details(&mut v, "case_details", r.case_details.as_ref());
    all_some!(v; key, episode_id, onset_date, meddra_pt, meddra_soc, outcome, causality, pv_declaration_date, pv_reference, pv_receiver);
    Ok((
        key,
        m::AdverseEvent {
            episode_id,
            onset_date,
            meddra_pt,
            meddra_soc,
            serious: r.serious,
            outcome,
            causality,
            pv_declaration_date,
            pv_reference,
            pv_receiver,
            details,
        },
    ))
}

pub fn parse_patient_update(r: &pb::UpdatePatientRequest) -> Result<(RecordId, i64, PatientUpdate, String), Status> {
    let mut v = Violations::new();
    let id = v.check("id", c::id(&r.id));
    let expected = v.check("expected_version", c::version(r.expected_version));
    let reason = v.check("reason", c::text(500)(&r.reason));
    let region = changed(&mut v, "region_code", &r.region_code, |raw| c::optional(raw, c::region));
    let vital_status = v.check(
        "vital_status",
        enum_in_opt!(r.vital_status, pb::VitalStatus, "VITAL_STATUS_", m::VitalStatus),
    );
    let diagnoses = Some(r.diagnoses.as_ref().map(|d| c::diagnoses(&mut v, &d.diagnoses)));
    let cde = r.cde.as_ref().map(|x| c::cde(&mut v, "cde", Some(x)));
    let sex = v.check("sex", enum_in_opt!(r.sex, pb::Sex, "SEX_", m::Sex));
    let birth_year_month = changed(&mut v, "birth_year_month", &r.birth_year_month, YearMonth::parse);
    all_some!(v; id, expected, reason, region, vital_status, diagnoses, sex, birth_year_month);
    Ok((
        id,
        expected,
        PatientUpdate {
            sex,
            birth_year_month,
            cde,
            region,
            vital_status,
            objects_to_reuse: r.objects_to_reuse,
            diagnoses,
        },
        reason,
    ))
}

pub fn parse_adverse_event_update(
    r: &pb::UpdateAdverseEventRequest,
) -> Result<(RecordId, i64, AdverseEventUpdate, String), Status> {
    let mut v = Violations::new();
    let id = v.check("id", c::id(&r.id));
    let expected = v.check("expected_version", c::version(r.expected_version));
    let reason = v.check("reason", c::text(500)(&r.reason));
    let outcome = v.check(
        "outcome",
        enum_in_opt!(r.outcome, pb::AeOutcome, "AE_OUTCOME_", m::AeOutcome),
    );
    let causality = v.check(
        "causality",
        enum_in_opt!(r.causality, pb::Causality, "CAUSALITY_", m::Causality),
    );
    let pv_date = v.check("pv_declaration_date", c::optional(&r.pv_declaration_date, c::date));
    let pv_reference = v.check("pv_reference", c::optional(&r.pv_reference, c::text(100)));
    // Both or neither: the registry's rule, then the pair.
    if let (Some(date), Some(reference)) = (&pv_date, &pv_reference) {
        c::rule(
            &mut v,
            rules::check_pv_declaration(date.is_some(), reference.is_some(), false),
        );
    }
    let pv_declaration = match (pv_date, pv_reference) {
        (Some(Some(d)), Some(Some(r))) => Some(Some((d, r))),
        (Some(None), Some(None)) => Some(None),
        _ => None,
    };
    let details = r
        .case_details
        .as_ref()
        .map(|d| c::case_details(&mut v, "case_details", Some(d)));
    let pv_receiver = changed(&mut v, "pv_receiver", &r.pv_receiver, c::text(200));
    all_some!(v; id, expected, reason, outcome, causality, pv_declaration, pv_receiver);
    Ok((
        id,
        expected,
        AdverseEventUpdate {
            serious: r.serious,
            outcome,
            causality,
            pv_declaration,
            pv_receiver,
            details,
        },
        reason,
    ))
}

/// An optional field of an update: absent leaves it as it is (`Some(None)`), present is parsed
/// (`Some(Some(x))`), malformed is a violation (`None`).
fn changed<T>(
    v: &mut Violations,
    field: &str,
    raw: &Option<String>,
    parse: impl FnOnce(&str) -> Result<T, observatory_domain::CodeError>,
) -> Option<Option<T>> {
    match raw {
        None => Some(None),
        Some(raw) => v.check(field, parse(raw)).map(Some),
    }
}

pub fn parse_episode_update(r: &pb::UpdateEpisodeRequest) -> Result<(RecordId, i64, EpisodeUpdate, String), Status> {
    let mut v = Violations::new();
    let id = v.check("id", c::id(&r.id));
    let expected = v.check("expected_version", c::version(r.expected_version));
    let reason = v.check("reason", c::text(500)(&r.reason));
    let request_date = changed(&mut v, "request_date", &r.request_date, c::date);
    let first_administration_date = changed(
        &mut v,
        "first_administration_date",
        &r.first_administration_date,
        c::date,
    );
    let end_date = changed(&mut v, "end_date", &r.end_date, c::date);
    let prescriber_rpps = changed(&mut v, "prescriber_rpps", &r.prescriber_rpps, c::rpps);
    let indication = changed(
        &mut v,
        "indication_orpha_code",
        &r.indication_orpha_code,
        codes::OrphaCode::parse,
    );
    let dosage = c::dosage(&mut v, "dosage", r.dosage.as_ref());
    all_some!(v; id, expected, reason, request_date, first_administration_date, end_date, prescriber_rpps, indication);
    Ok((
        id,
        expected,
        EpisodeUpdate {
            request_date,
            first_administration_date,
            end_date,
            dosage,
            prescriber_rpps,
            indication,
        },
        reason,
    ))
}

pub fn parse_authorisation_update(
    r: &pb::UpdateAuthorisationRequest,
) -> Result<(RecordId, i64, AuthorisationUpdate, String), Status> {
    let mut v = Violations::new();
    let id = v.check("id", c::id(&r.id));
    let expected = v.check("expected_version", c::version(r.expected_version));
    let reason = v.check("reason", c::text(500)(&r.reason));
    let reference = changed(&mut v, "reference", &r.reference, c::text(100));
    let submitted_date = changed(&mut v, "submitted_date", &r.submitted_date, c::date);
    let decision_date = changed(&mut v, "decision_date", &r.decision_date, c::date);
    let valid_from = changed(&mut v, "valid_from", &r.valid_from, c::date);
    let valid_to = changed(&mut v, "valid_to", &r.valid_to, c::date);
    all_some!(v; id, expected, reason, reference, submitted_date, decision_date, valid_from, valid_to);
    Ok((
        id,
        expected,
        AuthorisationUpdate {
            reference,
            submitted_date,
            decision_date,
            valid_from,
            valid_to,
        },
        reason,
    ))
}

pub fn parse_follow_up_update(
    r: &pb::UpdateFollowUpRequest,
) -> Result<(RecordId, i64, FollowUpUpdate, String), Status> {
    let mut v = Violations::new();
    let id = v.check("id", c::id(&r.id));
    let expected = v.check("expected_version", c::version(r.expected_version));
    let reason = v.check("reason", c::text(500)(&r.reason));
    let visit_date = changed(&mut v, "visit_date", &r.visit_date, c::date);
    let efficacy = v.check(
        "efficacy",
        enum_in_opt!(
            r.efficacy,
            pb::EfficacyAssessment,
            "EFFICACY_ASSESSMENT_",
            m::EfficacyAssessment
        ),
    );
    let adherence = v.check(
        "adherence",
        enum_in_opt!(r.adherence, pb::Adherence, "ADHERENCE_", m::Adherence),
    );
    let measures = r.measures.as_ref().map(|list| c::measures(&mut v, &list.measures));
    // 0 clears the weight; the plausible range is the registry's rule.
    let weight_kg = r.weight_kg.map(|w| (w != 0.0).then_some(w));
    if let Some(w) = weight_kg {
        c::rule(&mut v, rules::check_weight(w));
    }
    all_some!(v; id, expected, reason, visit_date, efficacy, adherence);
    Ok((
        id,
        expected,
        FollowUpUpdate {
            visit_date,
            efficacy,
            measures,
            weight_kg,
            adherence,
        },
        reason,
    ))
}

/// A file name for a case file: the event's id, or the period (and the page's first case).
pub fn case_file_name(selection: &CaseSelection, file: &CaseFile, extension: &str) -> String {
    match selection {
        CaseSelection::One(id) => format!("case-{id}.{extension}"),
        CaseSelection::Period { from, to, .. } => match file.cases.first() {
            Some(first) => format!("cases-{from}-{to}-from-{}.{extension}", first.event.meta.id),
            None => format!("cases-{from}-{to}.{extension}"),
        },
    }
}

/// A patient's case put to an RCP.
pub fn parse_rcp_request(
    r: &pb::RequestRcpReviewRequest,
) -> Result<(RecordId, i64, observatory_domain::rcp::RcpRequest), Status> {
    let mut v = Violations::new();
    let id = v.check("patient_id", c::id(&r.patient_id));
    let expected = v.check("expected_version", c::version(r.expected_version));
    let level = v.check("level", enum_in!(r.level, pb::RcpLevel, "RCP_LEVEL_", m::RcpLevel));
    let filiere = v.check("filiere", c::optional(&r.filiere, c::filiere));
    let centre_finess = v.check("centre_finess", c::finess(&r.centre_finess));
    let drug_atc = v.check("drug_atc", c::atc(&r.drug_atc));
    let indication = v.check(
        "indication_orpha_code",
        c::optional(&r.indication_orpha_code, codes::OrphaCode::parse),
    );
    let requested_on = v.check("requested_date", c::date(&r.requested_date));
    all_some!(v; id, expected, level, filiere, centre_finess, drug_atc, indication, requested_on);
    Ok((
        id,
        expected,
        observatory_domain::rcp::RcpRequest {
            level,
            filiere,
            centre_finess,
            drug_atc,
            indication,
            requested_on,
        },
    ))
}

/// An RCP's opinion on one of the patient's reviews.
pub fn parse_rcp_opinion(
    r: &pb::RecordRcpOpinionRequest,
) -> Result<(RecordId, i64, observatory_domain::rcp::RcpOpinionRecord), Status> {
    let mut v = Violations::new();
    let id = v.check("patient_id", c::id(&r.patient_id));
    let expected = v.check("expected_version", c::version(r.expected_version));
    let review_id = v.check("review_id", c::id(&r.review_id));
    let meeting_date = v.check("meeting_date", c::date(&r.meeting_date));
    let opinion = v.check(
        "opinion",
        enum_in!(r.opinion, pb::RcpOpinion, "RCP_OPINION_", m::RcpOpinion),
    );
    let conditions = v.check("conditions", c::optional(&r.conditions, c::text(500)));
    all_some!(v; id, expected, review_id, meeting_date, opinion, conditions);
    Ok((
        id,
        expected,
        observatory_domain::rcp::RcpOpinionRecord {
            review_id,
            meeting_date,
            opinion,
            conditions,
        },
    ))
}

/// Two records of one person to merge: the kept one and its version, the merged one and its
/// version, the reason.
pub type MergeRequest = ((RecordId, i64), (RecordId, i64), String);

pub fn parse_merge(r: &pb::MergePatientsRequest) -> Result<MergeRequest, Status> {
    let mut v = Violations::new();
    let kept = v.check("kept_id", c::id(&r.kept_id));
    let kept_version = v.check("kept_version", c::version(r.kept_version));
    let merged = v.check("merged_id", c::id(&r.merged_id));
    let merged_version = v.check("merged_version", c::version(r.merged_version));
    let reason = v.check("reason", c::text(500)(&r.reason));
    all_some!(v; kept, kept_version, merged, merged_version, reason);
    Ok(((kept, kept_version), (merged, merged_version), reason))
}
